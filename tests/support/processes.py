"""Real server processes for tests: free ports on 127.0.0.1, death with the test run, readiness polling."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

PR_SET_PDEATHSIG = 1
T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """Runs in the child: SIGTERM when the test process ends, however it ends; own process group."""
    os.setpgrp()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class PortTaken(RuntimeError):
    """The server could not bind its port: another process took it between free_port() and the server's bind (the
    ports of parallel test workers come from the same pool). Starting again on another port is the remedy."""


ATTEMPTS = 3  # starts on a fresh port before a taken port fails the test
TAKEN = ("address already in use", "connection in use")  # how servers (uvicorn, gunicorn, http.server) say it


def on_a_free_port(start: Callable[[int], T]) -> T:
    """start(port) on a free port, and again on another when the port was taken before the server bound it."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return start(free_port())
        except PortTaken:
            if attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable")


class ServerProcess:
    """A process started for a test that is stopped at the end of it (or when pytest dies)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        except OSError:
            self._log.close()
            raise

    def wait_ready(self, url: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log()
                self._log.close()
                kind = PortTaken if any(taken in log.lower() for taken in TAKEN) else RuntimeError
                raise kind(f"server exited with {self.proc.returncode}:\n{log}")
            try:
                if httpx.get(url, timeout=2.0).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready at {url} within {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:  # stop() closes it
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, grace_s: float = 15.0) -> int:
        """Signal the process group, wait up to `grace_s`, then kill it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self._log.close()
        return self.proc.returncode
