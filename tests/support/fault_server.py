"""A misbehaving FHIR server, run as its own process on 127.0.0.1 by the fault tests.

    python -m tests.support.fault_server PORT MODE
MODE: 500 (every answer HTTP 500), html (200 with an HTML body), json-array (200 with JSON that is no resource),
slow-pages (searchsets of 10 pages, each page answered after 0.5 s), redirect (302 to another host),
drip (200 with a body sent one byte every 0.5 s), huge and huge-unsized (a 200 MB searchset, with or without
Content-Length),
endless (searchsets whose every page links to one more), jwks-drip and jwks-huge (a JWK Set URL that drips
or answers 5 MB).
"""

from __future__ import annotations

import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.support.processes import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def start(port: int, mode: str, log_path: Path) -> ServerProcess:
    """This server as a process on `port` in MODE, once it answers (PortTaken when another process took the port)."""
    server = ServerProcess([sys.executable, "-m", "tests.support.fault_server", str(port), mode],
                           env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}, cwd=ROOT, log_path=log_path)
    server.wait_ready(f"http://127.0.0.1:{port}/fhir/metadata")
    return server


def main() -> None:
    port, mode = int(sys.argv[1]), sys.argv[2]

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, content_type: str = "application/fhir+json",
                  extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = urlsplit(self.path)
            if path.path.endswith("/metadata"):
                self._send(200, b'{"resourceType":"CapabilityStatement"}')
            elif mode == "500":
                self._send(500, b'{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"exception"}]}')
            elif mode == "html":
                self._send(200, b"<html><body>Service Unavailable</body></html>", "text/html")
            elif mode == "json-array":
                self._send(200, b"[1, 2, 3]")
            elif mode in ("drip", "jwks-drip"):
                self._drip()
            elif mode in ("huge", "huge-unsized"):
                self._huge(200 * 1024 * 1024, sized=mode == "huge")
            elif mode == "jwks-huge":
                self._huge(5 * 1024 * 1024, sized=False, prefix=b'{"keys":[', item=b'{"kty":"EC","kid":"x"},')
            elif mode == "endless" and (read := re.search(r"/([A-Z][A-Za-z]+)/([^/?]+)$", path.path)):
                self._send(200, json.dumps({"resourceType": read.group(1), "id": read.group(2)}).encode())
            elif mode == "endless":
                page = int(parse_qs(path.query).get("page", ["1"])[0])
                following = [{"relation": "next", "url": f"http://127.0.0.1:{port}{path.path}?page={page + 1}"}]
                self._send(200, json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": [],
                                            "link": following}).encode())
            elif mode == "redirect":
                self._send(302, b"", extra={"Location": "http://127.0.0.2:9/steal"})
            elif mode == "slow-pages":
                time.sleep(0.5)
                read = re.search(r"/([A-Z][A-Za-z]+)/([^/?]+)$", path.path)
                if read:
                    self._send(200, json.dumps({"resourceType": read.group(1), "id": read.group(2)}).encode())
                    return
                page = int(parse_qs(path.query).get("page", ["1"])[0])
                following = [{"relation": "next", "url": f"http://127.0.0.1:{port}{path.path}?page={page + 1}"}]
                bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [],
                          "link": following if page < 10 else []}
                self._send(200, json.dumps(bundle).encode())
            else:
                self._send(404, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}')

        def _drip(self) -> None:
            body = b'{"resourceType":"Bundle","type":"searchset","entry":[]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for byte in body:  # at most 28 s, then the connection is closed by the last byte
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.5)

        def _huge(self, size: int, sized: bool,
                  prefix: bytes = b'{"resourceType":"Bundle","type":"searchset","entry":[',
                  item: bytes = b'{"resource":{"resourceType":"Observation","status":"final"}},') -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            if sized:  # declared: refused before reading; undeclared: cut off while streaming
                self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = item * (65536 // len(item))
            sent = 0
            try:
                self.wfile.write(prefix)
                sent += len(prefix)
                while sent + len(chunk) < size:
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except OSError:
                return

        def log_message(self, *args: object) -> None:
            return None

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
