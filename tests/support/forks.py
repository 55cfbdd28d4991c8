"""Waiting for a child made with ``os.fork()``: its exit code, or a failure if it hangs."""

from __future__ import annotations

import os
import signal
import time


def wait_child(pid: int, timeout: float = 10.0) -> int:
    """The exit code of a forked child; SIGKILL and fail if it is not done in time."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"forked child {pid} still running after {timeout} s: killed")
        time.sleep(0.02)
