"""Run a command as the terminal's foreground job on its own, then hand the terminal back.

Usage:  python scripts/foreground.py COMMAND [ARG...]

``make run`` starts the service through this. Make runs in the terminal's foreground process
group, so a Ctrl-C would reach make as well as the service, and make reports the recipe as
interrupted (``make: *** [...] Interrupt``) while the service is still shutting down. Here the
command gets a process group of its own, which becomes the terminal's foreground group: the
terminal's Ctrl-C (and Ctrl-\\) reaches the command alone, which stops cleanly, and make sees
an ordinary exit status. Ctrl-Z stops the command and this wrapper's group (make included),
and ``fg`` continues both.

Only when standard input is a terminal; otherwise (CI, a pipe, systemd) the command simply
replaces this process. The exit status is the command's, or 128 + the signal that ended it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)


def _give_terminal(fd: int, group: int) -> None:
    """Make ``group`` the terminal's foreground group (a background caller would be stopped
    by SIGTTOU for asking, unless it ignores that signal)."""
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, group)
    finally:
        signal.signal(signal.SIGTTOU, previous)


def _exec(argv: Sequence[str]) -> None:
    try:
        os.execvp(argv[0], list(argv))
    except OSError as exc:
        print(f"foreground: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr)
        os._exit(127)


def run(argv: Sequence[str]) -> int:
    fd = sys.stdin.fileno()
    if not os.isatty(fd):
        _exec(argv)
    own_group = os.getpgrp()
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        _give_terminal(fd, os.getpgrp())
        _exec(argv)
    # Both sides set the group and hand over the terminal: whichever runs first wins the race,
    # and the other's call is then a no-op.
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    with contextlib.suppress(OSError):
        _give_terminal(fd, pid)

    def forward(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    try:
        while True:
            _, status = os.waitpid(pid, os.WUNTRACED)
            if os.WIFSTOPPED(status):
                # Ctrl-Z: give the terminal back, stop with the group that started us (the
                # shell then sees its job stopped) and, once continued, resume the command.
                _give_terminal(fd, own_group)
                os.killpg(own_group, signal.SIGTSTP)
                _give_terminal(fd, pid)
                os.killpg(pid, signal.SIGCONT)
                continue
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)
    finally:
        with contextlib.suppress(OSError):
            _give_terminal(fd, own_group)


def main() -> None:
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        sys.exit(2)
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
