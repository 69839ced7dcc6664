"""The test servers' start: a port another process took between free_port() and the server's bind is told apart
from any other failure, and the server starts again on another port."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from tests.support.fault_server import start as fault_server
from tests.support.processes import PortTaken, ServerProcess, on_a_free_port

pytestmark = pytest.mark.slow  # starts server processes


def test_a_port_taken_before_the_bind_is_port_taken_and_another_port_is_tried(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(PortTaken):
            fault_server(taken, "500", tmp_path / "taken.log")
        tried: list[int] = []

        def start(port: int) -> ServerProcess:
            tried.append(port)
            return fault_server(taken if len(tried) == 1 else port, "500", tmp_path / f"{len(tried)}.log")

        server = on_a_free_port(start)
        try:
            assert len(tried) == 2 and server.proc.poll() is None, "started on the second port"
        finally:
            server.stop()


def test_another_failure_is_not_retried(tmp_path: Path) -> None:
    calls = []

    def start(port: int) -> ServerProcess:
        """A server that exits at once, for another reason than its port."""
        calls.append(port)
        server = ServerProcess([sys.executable, "-c", "raise SystemExit(3)"], env={"PATH": "/usr/bin:/bin"},
                               cwd=tmp_path, log_path=tmp_path / "exits.log")
        server.wait_ready(f"http://127.0.0.1:{port}/", timeout_s=10)
        return server

    with pytest.raises(RuntimeError, match="exited with 3") as failed:
        on_a_free_port(start)
    assert not isinstance(failed.value, PortTaken) and len(calls) == 1
