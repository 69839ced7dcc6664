"""A proxy in front of a real sekmet-fhir, run as its own process on 127.0.0.1, for the Bulk Data client's faults
that sekmet cannot produce (it always answers a status poll 202 or 200, and serves its files itself).

    python -m tests.support.bulk_proxy PORT FILES_PORT UPSTREAM DATA_DIR MODE LOG

Everything is passed on to UPSTREAM (sekmet's base URL), with sekmet's base rewritten to the proxy's in headers and
bodies, except .well-known/smart-configuration (its token endpoint stays sekmet's own, the audience of the client's
assertion). MODE:
- busy: each export status URL and each file is answered 429 (Retry-After: 1), then 503 (no Retry-After), the
  first two times it is asked for; then passed on;
- elsewhere: the status response names its files on FILES_PORT, another origin (same host, another port), which
  serves them from sekmet's data folder (DATA_DIR/bulk/<job>/<name>) to anyone;
- down: each export status URL is answered 503 every time (the job is still deleted when asked);
- error-file: the status response lists one more file under `error`, which the proxy serves: OperationOutcome
  NDJSON of ERROR_TEXT;
- bad-manifest: the status response, once the export is done, is a JSON object whose `output` is not a list;
- pass: nothing changed.
LOG gets a line per request: "<port> <method> <path> auth=<yes|no> <status>".
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ERROR_TEXT = "Observation/obs-77 could not be exported: the resource is locked"
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "server", "date"}


def main() -> None:
    port, files_port, upstream, data_dir, mode, log_path = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                                            Path(sys.argv[4]), sys.argv[5], Path(sys.argv[6]))
    base = f"http://127.0.0.1:{port}{urlsplit(upstream).path}"
    files_base = f"http://127.0.0.1:{files_port}"
    upstream_root = f"{urlsplit(upstream).scheme}://{urlsplit(upstream).netloc}"
    asked: dict[str, int] = {}
    lock = threading.Lock()
    http = httpx.Client(timeout=60.0)

    def log(where: int, method: str, path: str, auth: bool, status: int) -> None:
        with lock, open(log_path, "a") as handle:
            handle.write(f"{where} {method} {path.split('?')[0]} auth={'yes' if auth else 'no'} {status}\n")

    class Proxy(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            # Logged before the answer goes out: a client that has its answer finds the request in the log.
            log(port, self.command, self.path, "Authorization" in self.headers, status)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _busy(self) -> bool:
            """busy: 429, then 503, the first two times an export's status URL or file is asked for; down: 503 for
            every status poll."""
            if mode == "down" and "/bulk-status/" in self.path and self.command == "GET":
                self._answer(503, b"", {"Retry-After": "1"})
                return True
            if mode != "busy" or not any(k in self.path for k in ("/bulk-status/", "/bulk-files/")) \
                    or self.command != "GET":
                return False
            with lock:
                count = asked[self.path] = asked.get(self.path, 0) + 1
            if count == 1:
                self._answer(429, b"", {"Retry-After": "1"})
            elif count == 2:
                self._answer(503, b"", {})
            return count <= 2

        def _forward(self) -> None:
            if self._busy():
                return
            if self.path.endswith("/proxy-errors/OperationOutcome.ndjson"):
                outcome = {"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "processing", "diagnostics": ERROR_TEXT}]}
                self._answer(200, json.dumps(outcome).encode() + b"\n", {"Content-Type": "application/fhir+ndjson"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP | {"host"}}
            response = http.request(self.command, upstream_root + self.path, headers=headers, content=body)
            content = response.content
            out = {k: v for k, v in response.headers.items() if k.lower() not in HOP}
            if "smart-configuration" not in self.path:
                content = content.replace(upstream.encode(), base.encode())
                out = {k: v.replace(upstream, base) for k, v in out.items()}
            if mode == "elsewhere" and "/bulk-status/" in self.path and response.status_code == 200:
                content = content.replace(f"{base}/bulk-files/".encode(), f"{files_base}/bulk-files/".encode())
            if mode == "error-file" and "/bulk-status/" in self.path and response.status_code == 200:
                status = json.loads(content)
                status["error"] = [*status.get("error", []), {"type": "OperationOutcome",
                                                               "url": f"{base}/proxy-errors/OperationOutcome.ndjson"}]
                content = json.dumps(status).encode()
            if mode == "bad-manifest" and "/bulk-status/" in self.path and response.status_code == 200:
                content = b'{"transactionTime": "2026-11-20T09:00:00Z", "request": "x", "output": "none"}'
            self._answer(response.status_code, content, out)

        do_GET = do_POST = do_PUT = do_DELETE = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Files(BaseHTTPRequestHandler):
        """Another origin serving the export's files from sekmet's data folder, with no authorisation."""

        def do_GET(self) -> None:
            job, name = self.path.split("?")[0].rsplit("/", 2)[-2:]
            path = data_dir / "bulk" / job / name
            body = path.read_bytes() if path.is_file() else b""
            log(files_port, "GET", self.path, "Authorization" in self.headers, 200 if body else 404)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/fhir+ndjson")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    files = ThreadingHTTPServer(("127.0.0.1", files_port), Files)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    ThreadingHTTPServer(("127.0.0.1", port), Proxy).serve_forever()


if __name__ == "__main__":
    main()
