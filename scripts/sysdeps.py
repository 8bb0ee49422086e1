#!/usr/bin/env python3
"""The system programs a make target needs, installed through apt when we may, named when we may not.

`make test` needs pgbouncer and chromium (a real PgBouncer and a real browser in the suite) and
openssl (the test CA); `make bench` adds wrk, node and npm. As root on a system with apt-get they
are installed quietly, only when missing; anywhere else the command stops before doing anything,
with one message listing exactly what to install. Nothing is skipped in silence.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# program -> (Debian package, where the suite looks for it besides PATH)
PROGRAMS = {
    "pgbouncer": ("pgbouncer", "/usr/sbin/pgbouncer"),
    "chromium": ("chromium", "/usr/bin/chromium"),
    "openssl": ("openssl", "/usr/bin/openssl"),
    "wrk": ("wrk", "/usr/bin/wrk"),
    "node": ("nodejs", "/usr/bin/node"),
    "npm": ("npm", "/usr/bin/npm"),
}
NEEDS = {
    "test": ("pgbouncer", "chromium", "openssl"),
    "bench": ("pgbouncer", "chromium", "openssl", "wrk", "node", "npm"),
}


def missing(target: str) -> list[str]:
    return [p for p in NEEDS[target] if not (shutil.which(p) or Path(PROGRAMS[p][1]).exists())]


def main(target: str) -> int:
    absent = missing(target)
    if not absent:
        return 0
    packages = sorted({PROGRAMS[p][0] for p in absent})
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"[sysdeps] installing {', '.join(packages)} (apt-get, once)", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
            done = subprocess.run(step, env=env, capture_output=True, text=True)
            if done.returncode != 0:  # quiet unless it fails
                print(done.stdout[-3000:] + done.stderr[-3000:], file=sys.stderr)
                print(f"[sysdeps] `{' '.join(step)}` failed", file=sys.stderr)
                return 1
        still = missing(target)
        if not still:
            return 0
        absent = still
    print(
        f"[sysdeps] `make {target}` needs {', '.join(absent)}, which this machine does not have.\n"
        f"          Install them first (Debian/Ubuntu: sudo apt-get install -y {' '.join(packages)};\n"
        f"          elsewhere, your system's packages of the same names), then run `make {target}` again.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "test"))
