"""scripts/sysdeps.py: what `make test` needs is there, installed, or named before any test runs."""

from __future__ import annotations

from scripts import sysdeps


def test_the_suites_programs_are_present_after_make_test_prepared_them():
    # make test ran sysdeps before this suite: pgbouncer, chromium and openssl are installed now.
    assert sysdeps.missing("test") == []


def test_without_root_it_stops_listing_exactly_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sysdeps.PROGRAMS, "no-such-program", ("no-such-package", "/nonexistent/no-such-program"))
    monkeypatch.setitem(sysdeps.NEEDS, "test", ("openssl", "no-such-program"))
    monkeypatch.setattr(sysdeps.os, "geteuid", lambda: 1000)
    assert sysdeps.main("test") == 1
    err = capsys.readouterr().err
    assert "`make test` needs no-such-program, which this machine does not have" in err
    assert "sudo apt-get install -y no-such-package" in err
