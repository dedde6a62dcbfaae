"""The local server's HTTP layer against careless and hostile clients: JSON errors, size limits, timeouts.

Every error the local endpoint sends is JSON ``{"code", "message", "error"}``: Flask's own (404, 405, 413, 500) and
those the HTTP parser sends before Flask sees a request (400, 414, 431). Bodies over SageMaker's 6 MB limit get a
413. A client gets ``header_timeout`` seconds to send its request line and headers (a 408, then the connection is
closed) and ``read_timeout`` seconds per read or write after that, so slow sockets cannot hold threads forever.
"""

from __future__ import annotations

import json
import select
import socket
import threading
from typing import Any

from werkzeug.serving import WSGIRequestHandler

from lmi_deploy.request_limits import MAX_REQUEST_BYTES

HEADER_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0


def json_error_body(status: int, message: str, error: str) -> bytes:
    return json.dumps({"code": status, "message": message, "error": error}).encode()


def install_json_errors(app: Any) -> None:
    """Every HTTP error Flask raises (unknown path, wrong method, body too large, a crash) answered as JSON."""
    from flask import Response
    from werkzeug.exceptions import HTTPException

    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES

    def json_error(error: HTTPException) -> Response:
        status = error.code or 500
        text = error.description or ""
        if status == 413:
            text = f"request body is larger than SageMaker's {MAX_REQUEST_BYTES}-byte payload limit"
        return Response(json_error_body(status, error.name, text), status, content_type="application/json")

    app.register_error_handler(HTTPException, json_error)


class GuardedRequestHandler(WSGIRequestHandler):
    """werkzeug's handler with a deadline for the request head, an idle timeout, and JSON for parser errors."""

    timeout = READ_TIMEOUT_S  # socketserver sets it on the connection: every later read and write
    header_timeout = HEADER_TIMEOUT_S

    def handle_one_request(self) -> None:
        self._head_read = self._head_cut = False
        timer = threading.Timer(self.header_timeout, self._cut_slow_head)
        timer.daemon = True
        timer.start()
        try:
            super().handle_one_request()
        finally:
            timer.cancel()

    def parse_request(self) -> bool:
        if self._head_cut:  # what arrived before the 408 is not a request
            self.close_connection = True
            return False
        parsed = super().parse_request()
        self._head_read = True
        return parsed

    def _cut_slow_head(self) -> None:
        """The request line and headers did not arrive in time: answer 408 and close (the reader thread ends)."""
        if self._head_read:
            return
        self._head_cut = True
        body = json_error_body(408, "Request Timeout", f"request head not received within {self.header_timeout:g} s")
        head = f"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        try:
            self.connection.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's errors (bad request line, 414, 431) as JSON instead of its HTML page."""
        short, long = self.responses.get(code, ("Error", ""))
        body = json_error_body(code, short, message or long)
        self.log_error("code %d, message %s", code, message)
        self.send_response(code, short)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True


def client_gone(connection: socket.socket | None) -> bool:
    """Whether the client at the other end of ``connection`` has closed it (checked without blocking)."""
    if connection is None:
        return False
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        if not readable:
            return False
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except (OSError, ValueError):  # reset, or closed on our side
        return True


def make_http_server(
    app: Any,
    host: str,
    port: int,
    header_timeout: float = HEADER_TIMEOUT_S,
    read_timeout: float = READ_TIMEOUT_S,
) -> Any:
    """A started, threaded werkzeug server for ``app`` with the guards above; call ``.shutdown()`` to stop it."""
    from werkzeug.serving import make_server

    install_json_errors(app)
    handler = type(
        "RequestHandler", (GuardedRequestHandler,), {"timeout": read_timeout, "header_timeout": header_timeout}
    )
    http = make_server(host, port, app, threaded=True, request_handler=handler)
    threading.Thread(target=http.serve_forever, name="http", daemon=True).start()
    return http
