"""Limits on the work one poll may do: its deadline, and how much a response may weigh.

A `timeout` given to an HTTP client bounds each socket read, not the request: a server that
drips one byte a second never trips it. So every poll carries a `Deadline`, every request
gets at most the time left on it (and at most `timeout`), and bodies are read in chunks with
the deadline and a size limit checked between chunks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from exporter.snapshot import ErrorReason, SourceError

# A source poll may make many requests (pages, manifests): it gets this many request
# timeouts in all. The poller waits a little longer than that before it gives up on a
# client that does not notice its deadline.
POLL_TIMEOUTS = 3
MANIFEST_LIMIT = 4 * 1024 * 1024
LIST_LIMIT = 32 * 1024 * 1024
CHUNK = 64 * 1024
# The longest wait an upstream's Retry-After or rate-limit reset may impose: a hint past it
# (GitHub once answered retry-after: 99999999999) is logged and cut to this.
MAX_RETRY_AFTER = 900.0


@dataclass(frozen=True)
class Deadline:
    """When a poll must be over (monotonic seconds), and the poll's start as epoch time."""

    at: float
    started_at: float

    @classmethod
    def after(cls, seconds: float, now: float) -> Deadline:
        return cls(time.monotonic() + seconds, now)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def for_request(self, what: str, timeout: float) -> float:
        """Seconds one request may take: the timeout, cut to what is left of the poll."""
        left = self.remaining()
        if left <= 0:
            raise SourceError(ErrorReason.TIMEOUT, f"{what}: the poll's deadline has passed")
        return min(timeout, left)


def read_limited(chunks: Iterable[bytes], limit: int, expires: float, what: str) -> bytes:
    """The whole body, or SourceError once it passes `limit` bytes or `expires` (monotonic)."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise SourceError(ErrorReason.TOO_LARGE, f"{what}: response is over {limit} bytes")
        if time.monotonic() > expires:
            raise SourceError(ErrorReason.TIMEOUT, f"{what}: response not complete in time")
        parts.append(chunk)
    return b"".join(parts)


def retry_after_seconds(header: str | None, now: float) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not header:
        return None
    text = header.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - now
        except (TypeError, ValueError, OverflowError):
            return None
    if math.isnan(seconds):
        return None
    return max(seconds, 0.0)
