"""A fault-injecting HTTP proxy on 127.0.0.1, in front of one of the simulator's servers.

It forwards every request to its upstream untouched until a test sets a fault for a path; the
fault then decides what the client gets: a body dripped a byte at a time, headers that never
end, a held connection, a reset, a status of its choosing, a huge body, or the upstream's JSON
changed. The proxy never imports the exporter: it only speaks HTTP.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
DRIP_SECONDS = 0.25  # between two bytes of a dripped answer


@dataclass(frozen=True)
class Upstream:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class Exchange:
    """One request in the proxy: what a fault reads, and how it answers."""

    def __init__(self, handler: BaseHTTPRequestHandler, proxy: FaultProxy) -> None:
        self.handler = handler
        self.proxy = proxy
        self.method = handler.command
        self.path = handler.path

    def forward(self, fresh: bool = False) -> Upstream:
        """The upstream's answer; `fresh` drops If-None-Match, so that it has a body."""
        host, port = self.proxy.upstream
        connection = http.client.HTTPConnection(host, port, timeout=10)
        dropped = _HOP_BY_HOP | ({"if-none-match"} if fresh else set())
        headers = {k: v for k, v in self.handler.headers.items() if k.lower() not in dropped}
        headers["Host"] = f"{host}:{port}"
        try:
            connection.request(self.method, self.path, headers=headers)
            response = connection.getresponse()
            body = response.read()
            return Upstream(response.status, response.getheaders(), body)
        finally:
            connection.close()

    def answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        handler = self.handler
        handler.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                handler.send_header(name, value)
        length = [v for k, v in headers if k.lower() == "content-length"]
        if self.method == "HEAD" and length:
            handler.send_header("Content-Length", length[0])
        else:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if self.method != "HEAD":
            handler.wfile.write(body)

    def relay(self) -> None:
        upstream = self.forward()
        self.answer(upstream.status, upstream.headers, upstream.body)

    @property
    def cleared(self) -> threading.Event:
        return self.proxy.cleared


Action = Callable[[Exchange], None]


class FaultProxy:
    """Listens on an ephemeral port of 127.0.0.1; `fault(path_regex, action)` arms a fault."""

    def __init__(self, upstream_url: str) -> None:
        split = urlsplit(upstream_url)
        self.upstream = (split.hostname or "127.0.0.1", split.port or 80)
        self._lock = threading.Lock()
        self._faults: list[tuple[re.Pattern[str], frozenset[str] | None, Action]] = []
        self._log: list[tuple[float, str, str]] = []
        self.cleared = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.clear()
        self._server.shutdown()
        self._server.server_close()

    def fault(self, path: str, action: Action, methods: set[str] | None = None) -> None:
        with self._lock:
            self.cleared.clear()
            self._faults.append((re.compile(path), frozenset(methods) if methods else None, action))

    def clear(self) -> None:
        """Disarm every fault; held and dripping answers end at once."""
        with self._lock:
            self._faults.clear()
            self.cleared.set()

    def requests(self, path: str = "", method: str | None = None, since: float = 0.0) -> int:
        pattern = re.compile(path)
        with self._lock:
            return sum(
                1
                for at, m, p in self._log
                if at >= since and pattern.search(p) and (method is None or m == method)
            )

    def _action_for(self, method: str, path: str) -> Action | None:
        with self._lock:
            self._log.append((time.monotonic(), method, path))
            for pattern, methods, action in self._faults:
                if pattern.search(path) and (methods is None or method in methods):
                    return action
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                exchange = Exchange(self, proxy)
                action = proxy._action_for(self.command, self.path)
                # A client that gave up mid-answer is what the fault was for.
                with contextlib.suppress(TimeoutError, BrokenPipeError, ConnectionResetError):
                    (action or Exchange.relay)(exchange)

            def do_HEAD(self) -> None:
                self.do_GET()

            def log_message(self, *_args: object) -> None:
                pass

        return Handler


# --- faults -------------------------------------------------------------------------------


def drip_body(exchange: Exchange) -> None:
    """The upstream's status and headers at once, then its body a byte at a time, forever."""
    upstream = exchange.forward(fresh=True)
    handler = exchange.handler
    handler.send_response(upstream.status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(upstream.body) + 10_000_000))
    handler.end_headers()
    handler.wfile.flush()
    body = upstream.body + b" " * 10_000_000
    for index in range(len(body)):
        if exchange.cleared.wait(DRIP_SECONDS):
            return
        handler.wfile.write(body[index : index + 1])
        handler.wfile.flush()


def drip_headers(exchange: Exchange) -> None:
    """A status line, then header bytes one at a time: the headers never end."""
    wfile = exchange.handler.wfile
    wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
    wfile.flush()
    while not exchange.cleared.wait(DRIP_SECONDS):
        wfile.write(b"a")
        wfile.flush()


def hold(exchange: Exchange) -> None:
    """Accept the request and never answer it, until the fault is cleared."""
    exchange.cleared.wait(60)


def reset(exchange: Exchange) -> None:
    """Close the connection with an RST and no answer."""
    connection = exchange.handler.connection
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    connection.close()


def respond(status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> Action:
    def action(exchange: Exchange) -> None:
        exchange.answer(status, headers or [("Content-Type", "application/json")], body)

    return action


def huge(size: int, headers: list[tuple[str, str]] | None = None) -> Action:
    """200 with a body of `size` bytes, sent as fast as the client reads it."""

    def action(exchange: Exchange) -> None:
        handler = exchange.handler
        handler.send_response(200)
        for name, value in headers or [("Content-Type", "application/json")]:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(size))
        handler.end_headers()
        chunk = b"{" + b" " * (64 * 1024 - 1)
        sent = 0
        while sent < size and not exchange.cleared.is_set():
            part = chunk[: min(len(chunk), size - sent)]
            handler.wfile.write(part)
            sent += len(part)

    return action


def rewrite_json(change: Callable[[Any], Any]) -> Action:
    """The upstream's answer with its JSON body passed through `change`."""

    def action(exchange: Exchange) -> None:
        upstream = exchange.forward(fresh=True)
        body = json.dumps(change(json.loads(upstream.body))).encode()
        headers = [(k, v) for k, v in upstream.headers if k.lower() not in ("etag",)]
        exchange.answer(upstream.status, headers, body)

    return action


def echo_authorization(status: int = 403) -> Action:
    """A Kubernetes Status whose message quotes the request's Authorization header back."""

    def action(exchange: Exchange) -> None:
        echoed = exchange.handler.headers.get("Authorization", "")
        status_body = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": f"forbidden: request with Authorization: {echoed} is not allowed",
            "reason": "Forbidden",
            "code": status,
        }
        exchange.answer(
            status, [("Content-Type", "application/json")], json.dumps(status_body).encode()
        )

    return action
