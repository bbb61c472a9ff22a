"""The programs runwatch runs on a remote host to follow files, and the commands that start them.

The follower is a small Python script (3.5+, standard library only) that follows many files at
once on one SSH channel. Commands arrive on its stdin, one per line:

    A IDX OFFSET INODE HEXPATH   follow file IDX from byte OFFSET (INODE 0 = not known yet)
    X IDX                        stop following IDX
    P IDX / C IDX                pause / continue reading IDX (the reader is behind)

It answers on stdout with framed messages:

    RW 1 PID                     hello with the follower's pid (lines before it are login noise)
    D IDX OFFSET LENGTH\\n<bytes> LENGTH bytes of IDX starting at absolute OFFSET
    T IDX REASON                 IDX restarts at byte 0 (REASON: truncated | rotated)
    O IDX INODE                  IDX is open (its inode, sent back with A after a reconnect)
    E IDX MESSAGE                IDX cannot be read now (missing, no permission); still tried

A file whose inode differs from the one given with `A` was rotated while nobody watched, and
restarts at 0. When the follower cannot start (no python3), one `tail -c +N -F` per file is used:
`tail_script` prints `RW S OFFSET` first, so a file that shrank while disconnected restarts at 0.
"""

from __future__ import annotations

import base64
import shlex

FOLLOWER = r"""
import os, sys, select, binascii
POLL = %(poll)r
READ = 262144
BUDGET = 1048576
out = sys.stdout.buffer
inp = sys.stdin.fileno()
files = {}

class F(object):
    __slots__ = ('path', 'off', 'ino', 'fd', 'err', 'paused')

def say(b):
    out.write(b)

def close(f):
    if f.fd is not None:
        try:
            os.close(f.fd)
        except OSError:
            pass
        f.fd = None

def problem(i, f, e):
    close(f)
    msg = ('%%s' %% (getattr(e, 'strerror', None) or e)).replace('\n', ' ').encode('utf-8', 'replace')
    if msg != f.err:
        f.err = msg
        say(b'E %%d ' %% i + msg + b'\n')

def reopen(i, f):
    f.fd = os.open(f.path, os.O_RDONLY)
    st = os.fstat(f.fd)
    f.err = None
    if f.ino and st.st_ino != f.ino:
        f.off = 0
        say(b'T %%d rotated\n' %% i)
    elif st.st_size < f.off:
        f.off = 0
        say(b'T %%d truncated\n' %% i)
    f.ino = st.st_ino
    say(b'O %%d %%d\n' %% (i, st.st_ino))

def pump(i, f):
    if f.fd is None:
        reopen(i, f)
    fst = os.fstat(f.fd)
    if fst.st_size < f.off:
        f.off = 0
        say(b'T %%d truncated\n' %% i)
    left = BUDGET
    while left > 0:
        data = os.pread(f.fd, min(READ, left), f.off)
        if not data:
            break
        say(b'D %%d %%d %%d\n' %% (i, f.off, len(data)))
        say(data)
        f.off += len(data)
        left -= len(data)
    if left < BUDGET:
        return True
    try:
        st = os.stat(f.path)
    except OSError:
        return False
    if (st.st_ino, st.st_dev) != (fst.st_ino, fst.st_dev):
        close(f)
        f.ino = 0
        f.off = 0
        say(b'T %%d rotated\n' %% i)
        return True
    return False

def command(line):
    p = line.split()
    if not p:
        return
    i = int(p[1])
    if p[0] == b'A':
        old = files.pop(i, None)
        if old is not None:
            close(old)
        f = F()
        f.off, f.ino, f.fd, f.err, f.paused = int(p[2]), int(p[3]), None, None, False
        f.path = os.path.expanduser(binascii.unhexlify(p[4]))
        files[i] = f
    elif p[0] == b'X':
        f = files.pop(i, None)
        if f is not None:
            close(f)
    elif i in files:
        files[i].paused = p[0] == b'P'

def main():
    say(b'RW 1 %%d\n' %% os.getpid())
    out.flush()
    buf = b''
    busy = False
    while True:
        if select.select([inp], [], [], 0 if busy else POLL)[0]:
            data = os.read(inp, 65536)
            if not data:
                return
            buf += data
            while b'\n' in buf:
                line, buf = buf.split(b'\n', 1)
                command(line)
        busy = False
        for i, f in list(files.items()):
            if f.paused:
                continue
            try:
                busy = pump(i, f) or busy
            except OSError as e:
                problem(i, f, e)
        out.flush()

try:
    main()
except (BrokenPipeError, KeyboardInterrupt):
    pass
"""

HELLO = b"RW 1 "

TAIL = r"""
f=%(path)s
n=%(offset)d
s=$(wc -c < "$f" 2>/dev/null | tr -d ' ')
if [ -n "$s" ] && [ "$s" -lt "$n" ]; then n=0; fi
echo "RW S $n"
exec tail -c +$((n + 1)) -F -- "$f"
"""


def follower_command(python: str, poll_interval: float) -> str:
    """The remote command line that starts the follower.

    The script travels base64-encoded inside single quotes so that any login shell (sh, bash,
    zsh, csh, fish) passes it through untouched.
    """
    script = FOLLOWER % {"poll": float(poll_interval)}
    packed = base64.b64encode(script.encode()).decode()
    return f"{python} -c 'import base64;exec(base64.b64decode(\"{packed}\"))'"


def tail_script(path: str, offset: int) -> str:
    """A POSIX sh script (fed to `sh -s` on stdin) that tails `path` from byte `offset`."""
    return TAIL % {"path": shell_path(path), "offset": offset}


def shell_path(path: str) -> str:
    """Quote a remote path for sh, keeping a leading `~/` meaning the remote home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def add_command(idx: int, offset: int, inode: int, path: str) -> bytes:
    """The follower's `A` line."""
    return b"A %d %d %d %s\n" % (idx, offset, inode, path.encode("utf-8", "surrogateescape").hex().encode())
