"""Reading a server's log output: one JSON object per line (LOG_FORMAT=json, the default)."""

from __future__ import annotations

import json


def records(out: str) -> list[dict]:
    """The JSON log records of `out`; other lines (a traceback printed by a library) are skipped."""
    found = []
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "event" in record:
                found.append(record)
    return found


def messages(out: str, *, level: str, starting: str) -> list[str]:
    """The messages at `level` that start with `starting`, with that start cut off."""
    return [
        r["event"][len(starting) :] for r in records(out) if r.get("level") == level and r["event"].startswith(starting)
    ]
