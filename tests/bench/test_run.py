"""bench/run.py's baseline checkout (BENCH_BASELINE): the order of a round, the migration
check, and the worktree a git rev gets (real git, in a repository of its own)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bench import report, run

PAIRS = report.BASELINE_OF


def test_without_a_baseline_a_round_is_the_plain_rotation():
    systems = run.SCENARIOS["get_user"]
    for r in range(7):
        shift = r % len(systems)
        assert run.round_order(systems, r, PAIRS) == systems[shift:] + systems[:shift]


def test_baseline_systems_sit_next_to_their_counterparts_in_the_compared_scenarios():
    scenarios = run.with_baseline(run.SCENARIOS)
    assert scenarios["get_user"] == [
        "seed",
        "project",
        "baseline",
        "project_django",
        "baseline_django",
        "project_nopool",
        "bare",
    ]
    assert scenarios["transfer"] == ["seed", "project", "baseline", "project_django", "baseline_django"]
    assert scenarios["mixed"] == ["project"]


def test_every_round_keeps_each_pair_together_and_flips_who_goes_first():
    systems = run.with_baseline(run.SCENARIOS)["get_user"]
    first = {pair: 0 for pair in PAIRS.items()}
    leaders = []
    for r in range(4):
        order = run.round_order(systems, r, PAIRS)
        assert sorted(order) == sorted(systems)
        leaders.append(order[0])
        for ours, theirs in PAIRS.items():
            i, j = order.index(ours), order.index(theirs)
            assert abs(i - j) == 1
            first[(ours, theirs)] += i < j
    assert first == {pair: 2 for pair in PAIRS.items()}  # each side first in half of 4 rounds
    assert len(set(leaders)) == 4  # and the rotation still moves every round


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_migration_differences_name_every_file_that_is_not_the_same(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for root in (ours, theirs):
        write(root, "market/migrations/0001_initial.py", "same")
        write(root, "market/migrations/__init__.py", "")
        write(root, "var/bench/baseline-x/market/migrations/0009_nested.py", "a worktree under var/ is not ours")
        write(root, ".venv/lib/django/contrib/auth/migrations/0001_initial.py", str(root))
    write(ours, "market/migrations/0002_new.py", "x")
    write(theirs, "blog/migrations/0002_old.py", "y")
    write(ours, "audit/migrations/0003_changed.py", "one")
    write(theirs, "audit/migrations/0003_changed.py", "two")
    write(theirs, "tests/migrations/0001_fixture.py", "tests are not served")

    differences = run.migration_differences(run.migration_files(ours), run.migration_files(theirs))
    assert differences == [
        "audit/migrations/0003_changed.py: differs",
        "blog/migrations/0002_old.py: only in the baseline",
        "market/migrations/0002_new.py: only in this checkout",
    ]
    assert run.migration_differences(run.migration_files(ours), run.migration_files(ours)) == []


def test_the_projects_own_migrations_are_found():
    found = run.migration_files(run.ROOT)
    assert {"market/migrations/0001_initial.py", "config/users/migrations/0001_initial.py"} <= found.keys()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    """A repository of its own with two commits, so no worktree is added to the project's."""
    root = tmp_path / "repo"
    root.mkdir()
    env_id = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    git(root, "init", "-q")
    write(root, "manage.py", "")
    write(root, "config/gunicorn.conf.py", "first = True\n")
    git(root, "add", ".")
    git(root, *env_id, "commit", "-qm", "first version")
    write(root, "config/gunicorn.conf.py", "first = False\n")
    git(root, *env_id, "commit", "-qam", "second version")
    return root


def test_a_git_rev_is_checked_out_under_var_and_removed_at_the_end(repo, tmp_path):
    var = tmp_path / "var"
    baseline = run.resolve_baseline("HEAD~1", repo=repo, var=var)
    assert baseline.created and baseline.root.parent == var
    assert (baseline.root / "config/gunicorn.conf.py").read_text() == "first = True\n"
    assert baseline.subject == "first version" and not baseline.dirty
    assert baseline.commit == git(repo, "rev-parse", "--short", "HEAD~1").strip()
    assert str(baseline.root) in git(repo, "worktree", "list")

    again = run.resolve_baseline("HEAD~1", repo=repo, var=var)  # a leftover of an interrupted run
    assert again.root == baseline.root

    run.remove_worktree(baseline.root, repo)
    assert not baseline.root.exists()
    assert str(baseline.root) not in git(repo, "worktree", "list")


def test_a_directory_is_used_as_it_is(repo, tmp_path):
    write(repo, "config/gunicorn.conf.py", "edited = True\n")
    baseline = run.resolve_baseline(str(repo), repo=tmp_path, var=tmp_path / "var")
    assert (baseline.root, baseline.created) == (repo.resolve(), False)
    assert baseline.subject == "second version" and baseline.dirty
    assert not (tmp_path / "var").exists()


def test_what_is_neither_a_checkout_nor_a_rev_is_refused(repo, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="not a checkout of this project"):
        run.resolve_baseline(str(tmp_path / "empty"), repo=repo, var=tmp_path / "var")
    with pytest.raises(RuntimeError, match="neither a directory nor a git revision"):
        run.resolve_baseline("no-such-rev", repo=repo, var=tmp_path / "var")


def test_a_process_started_in_the_baseline_imports_its_config_package_never_ours(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(run.ROOT)  # this checkout on the caller's path must not leak into the baseline's
    write(tmp_path, "base/config/__init__.py", "")
    base = tmp_path / "base"
    assert run.config_package_of(base, run.baseline_env(env, base)) == (base / "config").resolve()
    (tmp_path / "no_config").mkdir()
    with pytest.raises(RuntimeError, match="does not import"):
        run.config_package_of(tmp_path / "no_config", run.baseline_env(env, tmp_path / "no_config"))
