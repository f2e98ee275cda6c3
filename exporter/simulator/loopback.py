"""The part every in-process fake server shares: one port on 127.0.0.1 and a request log.

A subclass supplies the request handler class; this class runs it in a daemon thread, can take
it down and bring it back on the same port (so kubeconfigs and URLs handed out stay valid), and
keeps a lock-guarded log of what the subclass records about each request.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Generic, Self, TypeVar

EntryT = TypeVar("EntryT")


class QuietRequestHandler(BaseHTTPRequestHandler):
    """A handler that keeps stderr quiet: the server's request log says what was asked."""

    def log_message(self, format: str, *args: object) -> None:
        """Requests are recorded by the server, not printed."""


class LoopbackServer(ABC, Generic[EntryT]):
    """A threaded HTTP server on 127.0.0.1 that logs one EntryT per request."""

    def __init__(self) -> None:
        self._requests: list[EntryT] = []
        # Its own lock, so a subclass may record while holding the lock that guards its state.
        self._requests_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # Set while the server goes down, so a handler holding a request can let it go.
        self._stopping = threading.Event()
        self._port = 0

    @abstractmethod
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        """The handler that answers this server's requests."""

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Listen on an ephemeral port; after a stop(), on the same port again, state intact."""
        self._stopping.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler_class())
        server.daemon_threads = True
        self._server = server
        self._port = server.server_address[1]
        # A short poll interval keeps stop() quick; shutdown() waits for the next poll.
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Go down: the port refuses connections until start() is called again."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError(f"the {type(self).__name__} server was never started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- request log --------------------------------------------------------------------

    @property
    def requests(self) -> list[EntryT]:
        with self._requests_lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._requests_lock:
            return len(self._requests)

    def clear_requests(self) -> None:
        with self._requests_lock:
            self._requests.clear()

    def _record(self, entry: EntryT) -> None:
        with self._requests_lock:
            self._requests.append(entry)
