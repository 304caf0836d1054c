"""CPU time and memory of a process, read from /proc (Linux only).

CPU includes reaped children (``cutime``/``cstime``): an sshd master's figure then covers the
per-connection processes it forked once they have exited and been waited for, which is how the
jump host's and the target's cost are measured.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU seconds of ``pid`` (plus its waited-for children when asked)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may contain spaces: skip past it
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    ticks = utime + stime + ((cutime + cstime) if children else 0)
    return ticks / _TICK


def rss_kib(pid: int) -> int:
    """Resident set size (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (breadth first, from /proc/*/stat parent ids)."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited while we looked
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    queue = [pid]
    while queue:
        kids = parents.get(queue.pop(0), [])
        found += kids
        queue += kids
    return found


def tree_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and its descendants (a bastion supervisor and its workers)."""
    return sum(rss_kib(p) for p in (pid, *descendants(pid)))


def pss_kib(pid: int) -> int:
    """Proportional set size in KiB (shared pages split between their users); 0 if gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def tree_pss_kib(pid: int) -> int:
    """PSS of every descendant of ``pid`` (an sshd master's per-connection processes)."""
    return sum(pss_kib(p) for p in descendants(pid))


_CPUACCT = Path("/sys/fs/cgroup/cpuacct")


class CpuMeter:
    """CPU seconds of a process and everything it ever forks.

    sshd does not account its per-connection processes to the master (their CPU never shows in
    the master's ``cutime``), so when we may, each server gets its own cgroup-v1 ``cpuacct``
    group, which counts every task in it including exited ones. Without one (not root, no v1
    hierarchy) the meter falls back to the live process tree's own and reaped children's time,
    which is exact for the bastion (its workers live as long as it does) and a lower bound for
    sshd (``exact`` says which).
    """

    def __init__(self, pid: int, name: str) -> None:
        self.pid = pid
        self.group: Path | None = None
        if _CPUACCT.is_dir() and os.access(_CPUACCT, os.W_OK):
            group = _CPUACCT / f"bastion-bench-{os.getpid()}-{name}"
            try:
                group.mkdir(exist_ok=True)
                self.group = group
                for member in (pid, *descendants(pid)):  # a bastion's workers already run
                    (group / "cgroup.procs").write_text(f"{member}\n")
            except OSError:
                self.close()

    @property
    def exact(self) -> bool:
        return self.group is not None

    def seconds(self) -> float:
        if self.group is not None:
            return int((self.group / "cpuacct.usage").read_text()) / 1e9
        return sum(cpu_seconds(p) for p in (self.pid, *descendants(self.pid)))

    def close(self) -> None:
        """Remove the group (once its processes have exited; a live one keeps it)."""
        if self.group is not None:
            for _ in range(50):  # bounded: sshd's connection processes exit just after it
                try:
                    self.group.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
        self.group = None
