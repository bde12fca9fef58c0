"""The control API's door: only local pages, only JSON bodies.

Every request to the control API is refused with 403 unless its ``Host``
names a loopback address with the emulator's port (so a DNS-rebinding page
cannot reach it) and its ``Origin``, when present, is the emulator's own (so
another site cannot post to it).  POST bodies must be ``application/json``,
which a cross-site form cannot send, and at most :data:`MAX_BODY` bytes.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Tuple
from urllib.parse import urlsplit

from .._loopback import is_loopback, split_host

__all__ = ["MAX_BODY", "HTTPError", "check_local", "check_local_client", "read_json_body"]

#: Largest request body the API reads.
MAX_BODY = 1_000_000


class HTTPError(Exception):
    """A refusal with its HTTP status line (answered as ``{"error": message}``)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _split_origin(origin: str) -> Tuple[str, str, Optional[int]]:
    """An ``Origin`` header's scheme, host and port; ``("", "", None)`` when it is not a URL
    (an unclosed ``[``, a bad port): such a request is refused, not answered with a 500."""
    try:
        parts = urlsplit(origin)
        return parts.scheme, parts.hostname or "", parts.port
    except ValueError:
        return "", "", None


def check_local(environ: Dict[str, Any], port: int, scheme: str) -> None:
    """Raise :class:`HTTPError` (403) unless the request comes from a local page."""
    host, host_port = split_host(environ.get("HTTP_HOST", ""))
    if not is_loopback(host) or host_port != port:
        raise HTTPError("403 Forbidden", "refused: the Host header must be a loopback "
                        f"address with port {port} (the control API is local only)")
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None:
        origin_scheme, origin_host, origin_port = _split_origin(origin)
        if origin_scheme != scheme or not is_loopback(origin_host) or origin_port != port:
            raise HTTPError("403 Forbidden",
                            "refused: cross-origin request to the emulator's control API")


def check_local_client(environ: Dict[str, Any]) -> None:
    """Raise :class:`HTTPError` (403) unless a Socket.IO request names a loopback host.

    Looser than :func:`check_local` about ports, because tests put TCP proxies (other
    ports) in front of the emulator; what it must stop is a page on another site, reached
    by a rebound DNS name or sending its own ``Origin``, talking to a local bot server."""
    host, _ = split_host(environ.get("HTTP_HOST", ""))
    if not is_loopback(host):
        raise HTTPError("403 Forbidden", "refused: the Host header must be a loopback "
                        "address (the emulator is local only)")
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and not is_loopback(_split_origin(origin)[1]):
        raise HTTPError("403 Forbidden", "refused: a page of another site may not "
                        "connect to the emulator")


def read_json_body(environ: Dict[str, Any]) -> Dict[str, Any]:
    """The request's body as a JSON object (415, 413, or a ValueError/TypeError otherwise)."""
    ctype = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise HTTPError("415 Unsupported Media Type",
                        "the control API takes application/json bodies")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        raise HTTPError("413 Payload Too Large", f"bodies are limited to {MAX_BODY} bytes")
    raw = environ["wsgi.input"].read(length) if length else b"{}"
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise TypeError("the body must be a JSON object")
    return body
