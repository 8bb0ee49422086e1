"""The project as a user runs it: its root, the environment of its subprocesses, `manage.py`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def project_env(**overrides: str | None) -> dict[str, str]:
    """The environment a subprocess of the project gets: ours, with overrides (None removes)."""
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def manage(*args: str, env: dict | None = None, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Run `manage.py` as a user would, in a fresh process."""
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env or project_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
