"""A misbehaving FHIR server, run as its own process on 127.0.0.1 by the fault tests.

    python -m tests.support.fault_server PORT MODE
MODE: 500 (every answer HTTP 500), html (200 with an HTML body), json-array (200 with JSON that is no resource),
slow-pages (searchsets of 10 pages, each page answered after 0.5 s), redirect (302 to another host).
"""

from __future__ import annotations

import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


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

        def log_message(self, *args: object) -> None:
            return None

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
