"""The small HTTP plumbing both services share (webhooks, probes, metrics)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from gitopskit import webhookauth


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each keep-alive request stalls ~40 ms

    def log_message(self, format: str, *args: object) -> None:
        pass

    def send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self, limit: int = 1 << 20) -> bytes | None:
        """The request body, or None once a refusal has been sent (the connection is then closed: bytes
        left unread would be parsed as the next request)."""
        length = self.headers.get("Content-Length")
        if length is None and self.headers.get("Transfer-Encoding"):
            self._refuse(411, b"send a Content-Length\n")
            return None
        try:
            n = int(length or 0)
        except ValueError:
            n = -1
        if n < 0:
            self._refuse(400, b"bad Content-Length\n")
            return None
        if n > limit:
            self._refuse(413, f"body over {limit} bytes\n".encode())
            return None
        return self.rfile.read(n)

    def authorized_body(self, secret: str) -> bytes | None:
        """The body of a webhook from someone holding ``secret`` (signature or token), or None once the
        refusal (400/411/413, or 401) has been sent."""
        body = self.body()
        if body is None:
            return None
        if not webhookauth.authorized(secret, body, self.headers, urlsplit(self.path).query):
            self.send(401, b"missing or wrong signature or token\n")
            return None
        return body

    def _refuse(self, code: int, message: bytes) -> None:
        self.close_connection = True
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(message)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(message)


def start(listen: str, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """Serve ``handler`` on HOST:PORT in a daemon thread; stop with ``.shutdown()``."""
    host, _, port = listen.rpartition(":")
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server
