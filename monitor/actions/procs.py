"""Which process writes a log file, and signalling it only if it is still that very process.

Linux `/proc` through a POSIX shell, so the same scripts work on this machine and over SSH with
nothing installed on the host. A process is identified by its PID, its start time (field 22 of
`/proc/PID/stat`, in clock ticks since boot) and the `cksum` of its `/proc/PID/cmdline`; the stop
script checks all three right before `kill`, in the same shell, so a PID the kernel has handed to
another process since the plan was shown is never signalled.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

#: Exit statuses of the stop script.
EXIT_CHANGED = 97
"""The PID now belongs to another process (different start time or command line): not signalled."""
EXIT_GONE = 98
"""The process has exited: nothing to signal."""
EXIT_NO_FILE = 3
EXIT_NO_PROC = 4

SIGNALS = ("INT", "TERM", "HUP", "QUIT", "USR1", "USR2", "KILL")
_NUMBERS = {"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9, "USR1": 10, "USR2": 12, "TERM": 15}
#: Processes that only pass a pipe's bytes to the log: signalling them would not stop training.
PIPE_HELPERS = frozenset({"tee", "cat", "logger", "ts", "stdbuf", "script", "unbuffer", "multilog", "rotatelogs"})

# Prints every process (other than itself) that holds file "$f" open, with the fd's open flags,
# then describes each (see DESCRIBE).
_DESCRIBE_FN = r"""
desc() {
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  ck=$(cksum < "/proc/$1/cmdline" 2>/dev/null)
  cl=$(tr '\000\n\t' '   ' < "/proc/$1/cmdline" 2>/dev/null)
  printf 'CK\t%s\t%s\n' "$1" "$ck"
  printf 'CMD\t%s\t%s\n' "$1" "$cl"
  printf 'STAT\t%s\t%s\n' "$1" "$st"
  printf 'IGN\t%s\t%s\n' "$1" "$(sed -n 's/^SigIgn:[[:space:]]*//p' "/proc/$1/status" 2>/dev/null)"
}
[ -d /proc/self/fd ] || { echo "runwatch: this host has no /proc" >&2; exit 4; }
printf 'BOOT\t%s\t%s\n' "$(sed -n 's/^btime //p' /proc/stat)" "$(getconf CLK_TCK 2>/dev/null || echo 100)"
"""
_FIND = r"""
case $f in "~/"*) f="$HOME/${f#"~/"}" ;; esac
[ -e "$f" ] || { echo "runwatch: no such file: $f" >&2; exit 3; }
f=$(readlink -f -- "$f" 2>/dev/null || printf '%s' "$f")
pat=$(printf '%s\n' "$f" | sed 's/[][*?\\]/\\&/g')
if command -v find >/dev/null 2>&1; then
  hits=$(find /proc/[0-9]*/fd -maxdepth 1 -type l -lname "$pat" 2>/dev/null)
else
  hits=$(for l in /proc/[0-9]*/fd/*; do [ "$(readlink "$l" 2>/dev/null)" = "$f" ] && echo "$l"; done)
fi
seen=" "
for h in $hits; do
  p=${h#/proc/}; p=${p%%/*}; n=${h##*/}
  [ "$p" = "$$" ] && continue
  fl=$(sed -n 's/^flags:[[:space:]]*//p' "/proc/$p/fdinfo/$n" 2>/dev/null)
  printf 'FD\t%s\t%s\t%s\n' "$p" "$n" "$fl"
  case $seen in *" $p "*) ;; *) seen="$seen$p "; desc "$p" ;; esac
done
printf 'FILE\t%s\n' "$f"
"""
# Describes every process of process group "$g" (builtins only: no fork per process).
_GROUP = r"""
for d in /proc/[0-9]*; do
  { read -r line < "$d/stat"; } 2>/dev/null || continue
  rest=${line##*) }
  set -- $rest
  [ "$3" = "$g" ] && desc "${d#/proc/}"
done
true
"""


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """One process, as identified for a stop: PID plus start time plus command-line checksum."""

    pid: int
    ppid: int
    pgid: int
    comm: str
    start_ticks: int
    cmdline: str
    cmdline_sum: str
    """`cksum` of /proc/PID/cmdline: "CRC LENGTH"."""
    started_at: float | None = None
    writes: bool = False
    """Holds the file open for writing."""
    ignored: int = 0
    """Bit mask of ignored signals (`SigIgn` of /proc/PID/status): bit N-1 is signal N."""

    def ignores(self, signal_name: str) -> bool:
        """Whether the process ignores a signal (a job started with `&` by a script ignores SIGINT)."""
        number = _NUMBERS.get(signal_name)
        return number is not None and bool(self.ignored >> (number - 1) & 1)

    def describe(self) -> str:
        """`pid 4242: python train.py --lr 3e-4 (started 2026-05-05 10:15:02)`."""
        when = ""
        if self.started_at is not None:
            when = f" (started {datetime.fromtimestamp(self.started_at).strftime('%Y-%m-%d %H:%M:%S')})"
        return f"pid {self.pid}: {self.cmdline or '[' + self.comm + ']'}{when}"


@dataclass(frozen=True, slots=True)
class Listing:
    """What a find or group script printed: processes by PID, fds holding the file, the resolved path."""

    processes: dict[int, ProcessInfo]
    writers: frozenset[int]
    readers: frozenset[int]
    path: str | None = None


def find_script(path: str) -> str:
    """A script that lists the processes holding `path` open (absolute or `~/…`)."""
    return f"f={shlex.quote(path)}\n{_DESCRIBE_FN}{_FIND}"


def group_script(pgid: int) -> str:
    """A script that describes every process of process group `pgid`."""
    return f"g={int(pgid)}\n{_DESCRIBE_FN}{_GROUP}"


def describe_script(pids: Iterable[int]) -> str:
    """A script that describes the given processes."""
    calls = "\n".join(f"desc {int(p)}" for p in pids)
    return f"{_DESCRIBE_FN}\n{calls}\n"


def parse_listing(output: str) -> Listing:
    """Parse the output of `find_script`, `group_script` or `describe_script`."""
    boot: float | None = None
    hz = 100.0
    sums: dict[int, str] = {}
    cmds: dict[int, str] = {}
    stats: dict[int, str] = {}
    ignored: dict[int, int] = {}
    writers: set[int] = set()
    readers: set[int] = set()
    path = None
    for line in output.splitlines():
        tag, _, rest = line.partition("\t")
        if tag == "BOOT":
            b, _, h = rest.partition("\t")
            boot = float(b) if b.strip().isdigit() else None
            hz = float(h) if h.strip().isdigit() and float(h) > 0 else 100.0
            continue
        if tag == "FILE":
            path = rest
            continue
        pid_text, _, value = rest.partition("\t")
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if tag == "FD":
            _fd, _, flags = value.partition("\t")
            (writers if _writable(flags) else readers).add(pid)
        elif tag == "CK":
            sums[pid] = value.strip()
        elif tag == "CMD":
            cmds[pid] = value.strip()
        elif tag == "STAT":
            stats[pid] = value
        elif tag == "IGN":
            try:
                ignored[pid] = int(value.strip() or "0", 16)
            except ValueError:
                ignored[pid] = 0
    procs: dict[int, ProcessInfo] = {}
    for pid, stat in stats.items():
        cmd, ck, ign = cmds.get(pid, ""), sums.get(pid, ""), ignored.get(pid, 0)
        info = _from_stat(pid, stat, cmd, ck, boot, hz, pid in writers, ign)
        if info is not None:
            procs[pid] = info
    return Listing(procs, frozenset(writers), frozenset(readers), path)


def _writable(flags: str) -> bool:
    try:
        return int(flags.strip(), 8) & 0o3 in (0o1, 0o2)
    except ValueError:
        return False


def _from_stat(
    pid: int, stat: str, cmdline: str, cksum: str, boot: float | None, hz: float, writes: bool, ignored: int
) -> ProcessInfo | None:
    # `pid (comm) state ppid pgrp ...`: comm may hold spaces and parentheses, so split at the last ')'.
    head, sep, tail = stat.rpartition(")")
    if not sep:
        return None
    comm = head.partition("(")[2]
    fields = tail.split()
    if len(fields) < 20:
        return None
    try:
        ppid, pgid, start = int(fields[1]), int(fields[2]), int(fields[19])
    except ValueError:
        return None
    started = boot + start / hz if boot is not None else None
    return ProcessInfo(pid, ppid, pgid, comm, start, cmdline, cksum, started, writes, ignored)


def guard_script(processes: Iterable[ProcessInfo]) -> str:
    """Lines that exit (97 changed, 98 gone) unless each process still has its start time and command line."""
    lines = [
        "chk() {",
        # Fields 3 (state) and 22 (start time) of /proc/PID/stat; a zombie has exited already.
        """  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1,20)""",
        """  if [ -z "$st" ] || [ "${st%% *}" = Z ]; then""",
        f"""    echo "runwatch: pid $1 has exited: nothing to signal" >&2; exit {EXIT_GONE}""",
        "  fi",
        "  st=${st#* }",
        """  ck=$(cksum < "/proc/$1/cmdline" 2>/dev/null)""",
        """  if [ "$st" != "$2" ] || [ "$ck" != "$3" ]; then""",
        """    echo "runwatch: pid $1 is no longer the confirmed process (start time or command line differ):"""
        """ not signalled" >&2""",
        f"    exit {EXIT_CHANGED}",
        "  fi",
        "}",
    ]
    lines += [f"chk {p.pid} {p.start_ticks} {shlex.quote(p.cmdline_sum)}" for p in processes]
    return "\n".join(lines) + "\n"


def stop_script(processes: Iterable[ProcessInfo], signal_name: str) -> str:
    """Signal each process only if its start time and command line are still the ones confirmed."""
    procs = list(processes)
    if signal_name not in SIGNALS:
        raise ValueError(f"unknown signal {signal_name!r} (expected one of {', '.join(SIGNALS)})")
    return guard_script(procs) + f"kill -{signal_name} {' '.join(str(p.pid) for p in procs)}\n"


def alive_script(processes: Iterable[ProcessInfo]) -> str:
    """Prints the PIDs, among `processes`, still running as the same process."""
    checks = [
        f"""case "$(sed 's/^.*) //' /proc/{p.pid}/stat 2>/dev/null | cut -d' ' -f1,20)" in """
        f"""Z*) ;; *" {p.start_ticks}") echo {p.pid} ;; esac"""
        for p in processes
    ]
    return "\n".join([*checks, "true"]) + "\n"


def choose_targets(listing: Listing) -> list[ProcessInfo]:
    """The processes to signal: writers of the file that no other writer started (a launcher, not each rank)."""
    writers = [listing.processes[p] for p in sorted(listing.writers) if p in listing.processes]
    pids = {p.pid for p in writers}
    return [p for p in writers if p.ppid not in pids]


def short_cmdline(cmdline: str, limit: int = 160) -> str:
    return cmdline if len(cmdline) <= limit else cmdline[: limit - 1] + "…"
