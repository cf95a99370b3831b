"""Where a benchmark's time goes: the CPU seconds each part of the system spent during a measured span (Linux
/proc), so that a throughput can be set beside the ceiling the machine's cores allow.

- a process group (a server started in its own session: gunicorn's arbiter and workers, a task worker): the
  user + system time of its live processes, plus what its leader has collected from children that exited;
- the PostgreSQL backends serving a process group (``<group> PostgreSQL``): each backend's client socket
  (``127.0.0.1(PORT)`` in its command line) is matched to the group member holding that socket, so that the
  database work of the API and of the clustering worker are told apart, and other databases' work on a shared
  server is not counted. A backend whose connection closed during the span is lost (Django keeps connections
  open, ``conn_max_age``, so a benchmark's are not);
- ``postgres``: every PostgreSQL process (backends of every database, WAL writer, checkpointer...) plus what
  the postmaster has collected from backends that exited: the whole server, for a machine doing nothing else
  (for a moment after a backend exits it is in neither count, until the postmaster reaps it);
- ``children``: this process's waited-for children (a client run with ``subprocess.run``),
  ``getrusage(RUSAGE_CHILDREN)``.

Not a test; tests/bench/bench_all.py uses it.
"""

from __future__ import annotations

import os
import re
import resource
from collections.abc import Mapping
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")

# Indexes into the fields after the name (stat(5) numbers them from 1, the name being 2: field n is n - 3).
_PPID, _PGRP, _UTIME, _STIME, _CUTIME, _CSTIME = 1, 2, 11, 12, 13, 14
_BACKEND_CLIENT = re.compile(r"postgres: .* 127\.0\.0\.1\((\d+)\)")


def _stat(pid: int) -> tuple[str, list[str]] | None:
    """(command name, the fields after it) of /proc/PID/stat, or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    return name, text[text.rindex(")") + 2 :].split()


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


def _socket_ports() -> dict[str, int]:
    """{socket inode: local TCP port} of the machine's IPv4 sockets."""
    ports = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        ports[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    return ports


def _ports_of(pids: list[int], ports: Mapping[str, int]) -> set[int]:
    """The local TCP ports of the sockets these processes hold open."""
    found = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        for link in links:
            if link.startswith("socket:[") and link[8:-1] in ports:
                found.add(ports[link[8:-1]])
    return found


def _backend_port(pid: int) -> int | None:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return None
    match = _BACKEND_CLIENT.match(command.replace("\0", " "))
    return int(match.group(1)) if match else None


def snapshot(groups: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far: per named process group (its leader's pid) and the PostgreSQL backends serving it
    (``<name> PostgreSQL``), the whole ``postgres`` server, and this process's waited-for ``children``."""
    processes = _processes()
    postgres = {pid: fields for pid, (name, fields) in processes.items() if name.startswith("postgres")}
    backend_of_port = {port: pid for pid in postgres if (port := _backend_port(pid)) is not None}
    ports = _socket_ports()
    out: dict[str, float] = {}
    for label, leader in groups.items():
        members = [pid for pid, (_, fields) in processes.items() if int(fields[_PGRP]) == leader]
        out[label] = sum(_own(processes[pid][1]) for pid in members)
        if leader in processes:
            out[label] += _reaped(processes[leader][1])
        served = [backend_of_port[port] for port in _ports_of(members, ports) if port in backend_of_port]
        out[f"{label} PostgreSQL"] = sum(_own(postgres[pid]) for pid in served)
    out["postgres"] = sum(_own(fields) for fields in postgres.values()) + sum(
        _reaped(fields) for fields in postgres.values() if int(fields[_PPID]) not in postgres
    )  # the postmaster: the one postgres process whose parent is not one
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["children"] = usage.ru_utime + usage.ru_stime
    return out


def spent(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds per part between two snapshots."""
    return {label: after[label] - before.get(label, 0.0) for label in after}
