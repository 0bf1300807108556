#!/usr/bin/env python3
"""Runs `vfsvm run ARGS...` on a pseudo-terminal, as a user at a terminal
would, and checks the console: raw mode while the guest runs, Ctrl-A h
lists the keys, Ctrl-A x quits with status 0, and the terminal's settings
are restored afterwards. Prints one PASS/FAIL line per check; exit status
is the number of failures.

    pty-console.py VFSVM GUEST-ARGS...

GUEST-ARGS must boot Tests/Guests' events guest with do=spin; the same
arguments with do=xsave (a guest the VMM must stop with an error) check
that the terminal is restored on that path too.
"""
import os, pty, select, sys, termios, time

vfsvm, args = sys.argv[1], sys.argv[2:]
failures = 0

def check(ok, what, detail=""):
    global failures
    print(("PASS: " if ok else "FAIL: ") + what + ("" if ok else f" ({detail})"))
    failures += 0 if ok else 1

def read_until(fd, needle, seconds):
    data, deadline = b"", time.time() + seconds
    while needle not in data and time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    return data

pid, fd = pty.fork()
if pid == 0:
    os.execv(vfsvm, [vfsvm, "run"] + args)
out = read_until(fd, b"events guest: spin", 30)
check(b"events guest: spin" in out, "the guest's console appears on the terminal", out[-200:])
during = termios.tcgetattr(fd)
check(not (during[3] & termios.ICANON) and not (during[3] & termios.ECHO), "the terminal is in raw mode while the guest runs")
os.write(fd, b"\x01h")
out = read_until(fd, b"C-a x", 10)
check(b"C-a x" in out and b"C-a h" in out, "Ctrl-A h lists the keys", out[-200:])
os.write(fd, b"\x01x")
out = read_until(fd, b"Ctrl-A x", 10)
_, status = os.waitpid(pid, 0)
check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "Ctrl-A x quits with status 0", f"wait status {status}")
# The child is gone; its terminal settings live on the pty, which the
# parent still holds.
after = termios.tcgetattr(fd)
check(after[3] & termios.ICANON and after[3] & termios.ECHO, "canonical mode and echo are restored on exit", str(after[3]))

# The error path: the VMM stops the guest with a failure line.
pid, fd = pty.fork()
if pid == 0:
    os.execv(vfsvm, [vfsvm, "run"] + [a.replace("do=spin", "do=xsave") for a in args])
out = read_until(fd, b"unhandled", 30)
_, status = os.waitpid(pid, 0)
after = termios.tcgetattr(fd)
check(os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0, "a guest the VMM cannot run ends with a non-zero status on a terminal too", f"wait status {status}")
check(after[3] & termios.ICANON and after[3] & termios.ECHO, "the terminal is restored after a failure", str(after[3]))
sys.exit(failures)
