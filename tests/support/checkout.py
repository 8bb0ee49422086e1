"""A copy of the project in a temporary directory, for what `make run` does to a checkout:
its own var/ (local cluster, var/local.env) and .env, the real venv and Makefile.
The `checkout` fixture is in tests/scripts/conftest.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.project import ROOT

VENV = Path(sys.executable).parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a new shell: none of this test run's configuration."""
    env = {
        k: v
        for k, v in os.environ.items()
        if "_DATABASE_" not in k
        and not k.startswith(("DJANGO_", "LOCAL_PG", "WEB_", "APP_ROLE", "PORT", "BIND", "PROMETHEUS"))
    }
    env.update(extra)
    return env


class Checkout:
    def __init__(self, root: Path):
        self.root = root

    def make(self, *targets: str, env: dict | None = None, timeout: float = 300, **variables: str):
        args = [f"{k}={v}" for k, v in {"VENV": str(VENV), **variables}.items()]
        return subprocess.run(
            ["make", "--no-print-directory", *targets, *args],
            cwd=self.root,
            env=env or clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen_make(self, *targets: str, stdout, env: dict | None = None, **variables: str) -> subprocess.Popen:
        args = [f"{k}={v}" for k, v in {"VENV": str(VENV), **variables}.items()]
        return subprocess.Popen(
            ["make", "--no-print-directory", *targets, *args],
            cwd=self.root,
            env=env or clean_env(),
            stdout=stdout,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches
        )

    def devdb(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "scripts/devdb.py", *args],
            cwd=self.root,
            env=env or clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def manage(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.root,
            env=env or clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def stop_cluster(self) -> None:
        if (self.root / "var" / "pg" / "data").exists():
            self.devdb("down")


def copied_checkout():
    """The project's files (tracked and new, not ignored) copied with their times, so make
    sees the venv's stamps as current; no var/ and no .env. Under /tmp, not pytest's tmp_path:
    the cluster's `postgres` user must be able to reach it. Removed when the generator ends."""
    tmp_path = Path(tempfile.mkdtemp(prefix="checkout-"))
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    root = tmp_path / "project"
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if source.is_file():
            target = root / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for path in (tmp_path, root):
        path.chmod(0o755)  # the cluster runs as `postgres` when the tests run as root
    made = Checkout(root)
    yield made
    made.stop_cluster()
    shutil.rmtree(tmp_path, ignore_errors=True)


def interrupt(process: subprocess.Popen, timeout: float) -> int:
    """Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group."""
    os.killpg(process.pid, signal.SIGINT)
    return process.wait(timeout=timeout)
