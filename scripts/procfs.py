"""What /proc says about processes and their TCP sockets (Linux); used by the bench and the tests."""

from __future__ import annotations

import os
from pathlib import Path


def stat_fields(pid: int | str) -> list[str]:
    """/proc/<pid>/stat after "pid (comm) ": fields[1] is the parent, [2] the process group,
    [11]/[12] user/system CPU ticks. OSError when the process is gone."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def group_stats(pgid: int) -> list[list[str]]:
    """stat_fields of every live process in process group `pgid` (a server and its workers)."""
    out = []
    for pid in pids():
        try:
            fields = stat_fields(pid)
        except OSError:
            continue
        if int(fields[2]) == pgid:
            out.append([str(pid), *fields])
    return out


def tcp_owners(owner_pids: list[int]) -> dict[int, set[int]]:
    """Local TCP port -> the processes (of `owner_pids`) holding that socket."""
    inode_port: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            inode_port[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    owners: dict[int, set[int]] = {}
    for pid in owner_pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inode_port:
                owners.setdefault(inode_port[link[8:-1]], set()).add(pid)
    return owners
