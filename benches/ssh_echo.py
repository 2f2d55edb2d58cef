#!/usr/bin/env python3
"""Keystroke echo round trip through an interactive SSH shell.

    ssh_echo.py KEYS WARMUP -- ssh -tt [options] HOST

Runs the real `ssh` client on a local pseudo-terminal (so it puts the terminal in raw
mode and sends every key at once, as for a person typing), waits for the remote shell,
then turns the remote terminal raw and runs `dd bs=1` as the echoer: one read and one
write per key, like a line editor. Each key is one sample: the time from writing the
byte to the local terminal until the same byte comes back. Prints one line,
`samples_us=` followed by the samples (after WARMUP) in microseconds.
"""

import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time

TIMEOUT_S = 30.0


class Terminal:
    def __init__(self, argv):
        pid, fd = pty.fork()
        if pid == 0:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            os.execvp(argv[0], argv)
        self.pid = pid
        self.fd = fd
        self.buf = bytearray()

    def read_until(self, token, timeout=TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while True:
            at = self.buf.find(token)
            if at >= 0:
                del self.buf[: at + len(token)]
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {token!r} within {timeout}s; got {bytes(self.buf[-400:])!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    raise EOFError(f"ssh ended; last output {bytes(self.buf[-400:])!r}")
                self.buf.extend(data)

    def write(self, data):
        os.write(self.fd, data)

    def wait(self):
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            # Drain so ssh is never blocked writing its last output.
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    if not os.read(self.fd, 65536):
                        break
                except OSError:
                    break
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)


def main():
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        sys.exit(__doc__)
    keys, warmup = int(sys.argv[1]), int(sys.argv[2])
    total = keys + warmup
    term = Terminal(sys.argv[4:])
    # The shell is ready when it runs this line; the marker is split in the typed text
    # so the shell's own echo of the line does not match.
    term.write(
        f"stty raw -echo; echo ECHO''READY; dd bs=1 count={total} status=none; stty sane; exit\r".encode()
    )
    term.read_until(b"ECHOREADY")
    letters = b"abcdefghijklmnopqrstuvwxyz"
    samples = []
    for i in range(total):
        key = letters[i % len(letters) : i % len(letters) + 1]
        start = time.perf_counter_ns()
        term.write(key)
        term.read_until(key)
        took = time.perf_counter_ns() - start
        if i >= warmup:
            samples.append(took / 1000.0)
    code = term.wait()
    if code != 0:
        sys.exit(f"ssh exited with {code}")
    print("samples_us=" + " ".join(f"{s:.1f}" for s in samples))


if __name__ == "__main__":
    main()
