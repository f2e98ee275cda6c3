"""The one place credentials are scrubbed from text.

Every secret the exporter reads or derives (tokens from env vars and files, the basic-auth
header made from them, bearer tokens a registry hands out, kubeconfig credentials) is
registered here the moment it is held. Two gates then apply `redact` to every string that
leaves the process: `SourceError` (whose message reaches logs, the page and the API) and the
logging filter installed on the root handlers (every log line, including tracebacks and
messages that upstreams echo back). A new call site therefore cannot forget to redact.
"""

from __future__ import annotations

import base64
import logging
import threading

REDACTED = "<redacted>"
# Shorter values are too likely to occur by chance (and too weak to be real credentials).
_MIN_SECRET_LENGTH = 8
_lock = threading.Lock()
_secrets: set[str] = set()


def register(secret: str | None) -> None:
    """Remember a credential, and the encodings in which it can appear, so it is redacted."""
    if not secret or len(secret) < _MIN_SECRET_LENGTH:
        return
    forms = {secret, base64.b64encode(secret.encode()).decode("ascii")}
    with _lock:
        _secrets.update(forms)


def register_basic(username: str, password: str) -> None:
    """A basic-auth pair: the password and the base64 of `username:password` are secrets."""
    register(password)
    register(base64.b64encode(f"{username}:{password}".encode()).decode("ascii"))


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)  # longer first: one may contain another
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Formats each record once and scrubs the result, the traceback included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            formatter = logging.Formatter()
            message = f"{message}\n{formatter.formatException(record.exc_info)}"
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = redact(message), None
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of the logger (the root by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
