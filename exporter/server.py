"""HTTP serving: /metrics, the pipeline page, /api/v1/state, /healthz and /readyz."""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter import __version__, page, viewmodel
from exporter.collector import PromotionCollector
from exporter.config import Config
from exporter.poller import Poller

log = logging.getLogger(__name__)


def parse_listen_address(address: str) -> tuple[str, int]:
    """':9817' or 'host:port' (Prometheus style) as (host, port); '' host means all interfaces."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address {address!r} is not [host]:port")
    return host.strip("[]"), int(port)


class _DualStackServer(ThreadingHTTPServer):
    """All interfaces, IPv6 and IPv4, as ':port' means for Prometheus exporters."""

    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _bind(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    if host:
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        return server_class((host, port), handler)
    try:
        return _DualStackServer(("::", port), handler)
    except OSError:
        # A kernel without IPv6: all IPv4 interfaces is what ':port' can still mean.
        return ThreadingHTTPServer(("0.0.0.0", port), handler)


class ExporterServer:
    """Serves the poller's state; start() returns once the socket listens."""

    def __init__(self, poller: Poller, address: str) -> None:
        self.poller = poller
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(PromotionCollector(poller))
        self.httpd = _bind(*parse_listen_address(address), self._handler())
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                route = {
                    "/metrics": server.metrics,
                    "/": server.landing,
                    "/api/v1/state": server.state,
                    "/healthz": lambda _h: (200, "text/plain; charset=utf-8", b"ok\n"),
                    "/readyz": server.ready,
                }.get(path)
                if route is None:
                    self.reply(404, "text/plain; charset=utf-8", b"not found\n")
                    return
                self.reply(*route(self))

            def reply(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("%s " + format, self.address_string(), *args)

        return Handler

    def metrics(self, handler: BaseHTTPRequestHandler) -> tuple[int, str, bytes]:
        encoder, content_type = choose_encoder(handler.headers.get("Accept", ""))
        return 200, content_type, encoder(self.registry)

    def ready(self, _handler: BaseHTTPRequestHandler) -> tuple[int, str, bytes]:
        if self.poller.state is None:
            return 503, "text/plain; charset=utf-8", b"not ready: first poll not complete\n"
        if self.poller.all_stale():
            return 503, "text/plain; charset=utf-8", b"not ready: every source is stale\n"
        return 200, "text/plain; charset=utf-8", b"ready\n"

    def _view(self) -> viewmodel.StateView | None:
        state = self.poller.state  # read once: the poller may swap it meanwhile
        return viewmodel.build_view(self.poller.config, state) if state is not None else None

    def landing(self, _handler: BaseHTTPRequestHandler) -> tuple[int, str, bytes]:
        body = page.render_page(self._view(), __version__)
        return 200, "text/html; charset=utf-8", body.encode()

    def state(self, _handler: BaseHTTPRequestHandler) -> tuple[int, str, bytes]:
        view = self._view()
        if view is None:
            data: dict[str, object] = {
                "api_version": viewmodel.API_VERSION,
                "error": "not ready: first poll not complete",
            }
            return 503, "application/json", json.dumps(data).encode()
        return 200, "application/json", json.dumps(viewmodel.to_json(view)).encode()


def serve(config: Config, address: str) -> None:
    """Run the exporter until SIGTERM or SIGINT: poll in the background, serve HTTP."""
    poller = Poller(config)
    server = ExporterServer(poller, address)
    stop = threading.Event()
    install_signal_handlers(stop)
    server.start()
    log.info("listening on %s, polling every %gs", address, config.interval)
    polling = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    polling.start()
    stop.wait()
    log.info("shutting down")
    server.stop()
    # Poll threads are daemons: a request in flight dies with the process, so the exit
    # never waits for an upstream.
    polling.join(timeout=SHUTDOWN_WAIT)


SHUTDOWN_WAIT = 0.5


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT stop; SIGHUP is logged and ignored (reloading comes later)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    signal.signal(
        signal.SIGHUP, lambda *_: log.warning("SIGHUP received: reloading is not supported yet")
    )
