"""A command in a pseudo-terminal of its own, for the tests of Ctrl-C."""

from __future__ import annotations

import os
import pty
import select
import signal
from pathlib import Path
from typing import Optional

from ingestor_harness import wait_until


class Terminal:
    """A command run in a pseudo-terminal of its own, as a user runs it in theirs: Ctrl-C
    is the terminal's, signalling its foreground process group (make and what make runs)."""

    def __init__(self, cwd: Path, command: list[str], env: Optional[dict[str, str]] = None):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its controlling terminal
            os.chdir(cwd)
            os.execvpe(command[0], command, env if env is not None else os.environ)
        self.output = ""
        self.exit_code: int | None = None

    def read(self, timeout: float = 0.2) -> str:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                self.output += os.read(self.fd, 65536).decode(errors="replace").replace("\r\n", "\n")
            except OSError:  # the other end closed: the command has ended
                pass
        return self.output

    def wait_for(self, text: str, timeout: float) -> None:
        wait_until(lambda: text in self.read(), timeout, f"{text!r} in:\n{self.output}", interval=0)

    def ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")

    def wait(self, timeout: float) -> int:
        def ended() -> bool:
            self.read()
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
            return pid != 0
        wait_until(ended, timeout, f"the command to end; it printed:\n{self.output}", interval=0)
        before = None
        while before != self.output:  # what is left in the pty
            before = self.output
            self.read(0.1)
        os.close(self.fd)
        return self.exit_code

    def kill(self) -> None:
        """After a failed test: Ctrl-C first, so the command stops what it started; then SIGKILL."""
        if self.exit_code is not None:
            return
        self.ctrl_c()
        try:
            self.wait(timeout=30)
        except AssertionError:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            os.close(self.fd)
