"""Where a benchmark's time goes: the CPU seconds each part of the system spent during a measured span (Linux
/proc), so that a throughput can be set beside the ceiling the machine's cores allow.

- a process group (a server started in its own session: gunicorn's arbiter and workers, a task worker): the
  user + system time of its live processes, plus what its leader has collected from children that exited;
- PostgreSQL: every ``postgres`` process (backends, WAL writer, checkpointer...) plus what the postmaster has
  collected from backends that exited (a connection closed during the span still counts, once the postmaster
  has reaped its backend: for a moment after it exits it is in neither count);
- this process's waited-for children (a client run with ``subprocess.run``): ``getrusage(RUSAGE_CHILDREN)``.

Not a test; tests/bench/bench_all.py uses it.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, list[str]] | None:
    """(command name, the fields after it) of /proc/PID/stat, or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    return name, text[text.rindex(")") + 2 :].split()


# Indexes into the fields after the name (stat(5) numbers them from 1, the name being 2: field n is n - 3).
_PPID, _PGRP, _UTIME, _STIME, _CUTIME, _CSTIME = 1, 2, 11, 12, 13, 14


def _processes() -> dict[int, tuple[str, list[str]]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                found[int(entry.name)] = stat
    return found


def _own(fields: list[str]) -> float:
    return (int(fields[_UTIME]) + int(fields[_STIME])) / TICK


def _reaped(fields: list[str]) -> float:
    return (int(fields[_CUTIME]) + int(fields[_CSTIME])) / TICK


def snapshot(groups: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far: per named process group (its leader's pid), ``postgres`` and ``children``."""
    processes = _processes()
    out: dict[str, float] = {}
    for label, leader in groups.items():
        members = [fields for fields in (s for _, s in processes.values()) if int(fields[_PGRP]) == leader]
        out[label] = sum(_own(fields) for fields in members)
        if leader in processes:
            out[label] += _reaped(processes[leader][1])
    postgres = {pid: fields for pid, (name, fields) in processes.items() if name.startswith("postgres")}
    out["postgres"] = sum(_own(fields) for fields in postgres.values()) + sum(
        _reaped(fields) for fields in postgres.values() if int(fields[_PPID]) not in postgres
    )  # the postmaster: the one postgres process whose parent is not one
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["children"] = usage.ru_utime + usage.ru_stime
    return out


def spent(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds per part between two snapshots."""
    return {label: after[label] - before.get(label, 0.0) for label in after}
