"""The doctor's network probes, one per hop: proxy, DNS, TCP (and the proxy tunnel), TLS.

Each returns ``(detail, value)`` for its line and the next probe, or raises
:class:`~.checks.CheckFailed` with a one-line explanation.  They open their own
sockets, as the bot would, so that a failure points at the hop that failed.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from .checks import CheckFailed, ms, os_reason

__all__ = ["Proxy", "dns", "proxy", "resolve", "tcp", "tls", "tls_hint"]


@dataclass(frozen=True)
class Proxy:
    """The HTTP proxy the bot's websocket would go through."""

    host: str
    port: int
    auth: Optional[Tuple[str, str]] = None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _proxy_rules() -> Optional[Callable[..., Any]]:
    # websocket-client's own proxy rules (http_proxy, NO_PROXY...), so that the
    # doctor decides as the bot's websocket will: an upstream private name, so
    # looked up through the one table of them.
    from ...transport.upstream import proxy_rules

    return proxy_rules()


def proxy(host: str, port: int, secure: bool,
          on_secret: Callable[..., None]) -> Tuple[str, Optional[Proxy]]:
    """Whether the websocket goes direct or through a proxy (``on_secret`` gets its password)."""
    variable = "https_proxy" if secure else "http_proxy"
    setting = os.environ.get(variable) or os.environ.get(variable.upper())
    rules = _proxy_rules()
    if rules is None:
        return "not checked (websocket-client's proxy rules not found)", None
    try:
        proxy_host, proxy_port, proxy_auth = rules(host, secure)
    except Exception as exc:
        raise CheckFailed(f"bad proxy setting in {variable}: {exc}") from None
    if not proxy_host:
        if setting:
            return f"direct: NO_PROXY matches {host}", None
        return f"direct: no {variable}/{variable.upper()} variable", None
    if proxy_auth:
        on_secret(*(part for part in proxy_auth if part))
    if not proxy_port:
        raise CheckFailed(f"the proxy in {variable} has no port: write it as http://HOST:PORT")
    found = Proxy(proxy_host, int(proxy_port), tuple(proxy_auth) if proxy_auth else None)
    return (f"through {found} (from {variable}; add {host} to NO_PROXY to bypass it)"), found


def resolve(host: str, port: int, timeout: float) -> List[Tuple[Any, ...]]:
    """``getaddrinfo`` bounded by ``timeout`` (it has no timeout of its own)."""
    box: List[Any] = []

    def work() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as exc:  # reported by the caller
            box.append(exc)

    worker = threading.Thread(target=work, name="watchers-doctor-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if not box:
        raise CheckFailed(f"cannot resolve {host}: no answer in {timeout:g}s "
                           "(is a DNS server reachable?)")
    if isinstance(box[0], BaseException):
        exc = box[0]
        raise CheckFailed(f"cannot resolve {host}: {os_reason(exc)} "
                           "(check the host name in the URL, and DNS)")
    return list(box[0])


def dns(host: str, port: int, via: Optional[Proxy], timeout: float) -> Tuple[str, Any]:
    """The addresses of the host (or, through a proxy, of the proxy)."""
    target, target_port = (via.host, via.port) if via else (host, port)
    infos = resolve(target, target_port, timeout)
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    shown = ", ".join(addresses[:3]) + (f" and {len(addresses) - 3} more"
                                        if len(addresses) > 3 else "")
    what = f"proxy {target}" if via else target
    note = f"; the proxy resolves {host}" if via else ""
    return f"{what} -> {shown}{note}", infos


def tcp(host: str, port: int, infos: List[Tuple[Any, ...]], via: Optional[Proxy],
        timeout: float) -> Tuple[str, socket.socket]:
    """A TCP connection to the first address that answers (through a proxy: and a tunnel)."""
    started = time.monotonic()
    last: Optional[BaseException] = None
    sock: Optional[socket.socket] = None
    for family, kind, proto, _canon, address in infos:
        candidate = socket.socket(family, kind, proto)
        candidate.settimeout(timeout)
        try:
            candidate.connect(address)
        except OSError as exc:
            candidate.close()
            last = exc
            continue
        sock = candidate
        break
    target = str(via) if via else f"{host}:{port}"
    if sock is None:
        reason = os_reason(last) if last is not None else "no address"
        what = "the proxy " if via else ""
        raise CheckFailed(
            f"cannot connect to {what}{target}: {reason} (is the server up, the port "
            "right, and no firewall in the way?)"
        )
    if via is None:
        return f"connected to {target} in {ms(started)}", sock
    try:
        status = _tunnel(sock, host, port, via.auth)
    except BaseException:
        sock.close()
        raise
    return (f"connected to proxy {target}; tunnel to {host}:{port} opened in "
            f"{ms(started)} ({status})"), sock


def _tunnel(sock: socket.socket, host: str, port: int,
            auth: Optional[Tuple[str, str]]) -> str:
    request = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if auth and auth[0]:
        pair = auth[0] + (f":{auth[1]}" if auth[1] else "")
        request += f"Proxy-Authorization: Basic {base64.b64encode(pair.encode()).decode()}\r\n"
    request += "\r\n"
    try:
        sock.sendall(request.encode("latin-1"))
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 16384:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    except OSError as exc:
        raise CheckFailed(f"the proxy failed during CONNECT: {os_reason(exc)}") from None
    status = head.split(b"\r\n", 1)[0].decode("latin-1", "replace").strip()
    fields = status.split(None, 2)
    if len(fields) < 2 or fields[1] != "200":
        raise CheckFailed(f"the proxy refused the tunnel to {host}:{port}: "
                          f"{status or 'no answer'}")
    return status


def tls(sock: socket.socket, host: str, *, verify: bool,
        ca_certs: Optional[str]) -> Tuple[str, socket.socket]:
    """The TLS handshake, verified as the bot verifies (``ca_certs``, the environment's
    ``WEBSOCKET_CLIENT_CA_BUNDLE``, or the system's store)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        bundle = ca_certs or os.environ.get("WEBSOCKET_CLIENT_CA_BUNDLE")
        if bundle:
            try:
                context.load_verify_locations(cafile=bundle)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise CheckFailed(
                    f"cannot load the CA bundle {bundle}: {os_reason(exc)}"
                ) from None
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    started = time.monotonic()
    try:
        wrapped = context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLError as exc:
        raise CheckFailed(tls_hint(exc)) from None
    except OSError as exc:
        raise CheckFailed(f"TLS handshake failed: {os_reason(exc)}") from None
    version = wrapped.version() or "TLS"
    if not verify:
        return (f"{version} handshake in {ms(started)}; certificate NOT verified "
                "(--no-verify-ssl)"), wrapped
    cert = wrapped.getpeercert() or {}
    issuer: Dict[str, str] = {}
    names = cert.get("issuer", ())
    for rdn in names if isinstance(names, tuple) else ():
        for pair in rdn:
            if isinstance(pair, tuple) and len(pair) == 2:
                issuer[str(pair[0])] = str(pair[1])
    detail = f"{version} in {ms(started)}, certificate verified for {host}"
    if issuer.get("organizationName") or issuer.get("commonName"):
        detail += f" (issued by {issuer.get('organizationName') or issuer['commonName']}"
        expires = cert.get("notAfter")
        detail += f", expires {expires})" if expires else ")"
    if ca_certs:
        detail += f" with CA bundle {ca_certs}"
    elif os.environ.get("WEBSOCKET_CLIENT_CA_BUNDLE"):
        detail += " with the CA bundle in WEBSOCKET_CLIENT_CA_BUNDLE"
    return detail, wrapped


def tls_hint(exc: ssl.SSLError) -> str:
    """A failed handshake, said with what to do about it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = str(exc.verify_message or exc.reason or exc)
        lowered = message.lower()
        if "hostname" in lowered or "ip address mismatch" in lowered:
            hint = "the certificate is for another host: check --url/--region"
        elif "expired" in lowered or "not yet valid" in lowered:
            hint = "check the server's certificate, and this machine's clock"
        else:
            hint = ("the certificate is not signed by a CA this machine trusts: pass "
                    "--ca-certs FILE with the CA bundle; behind a TLS-inspecting proxy, "
                    "its CA")
        return f"certificate verification failed: {message} ({hint})"
    reason = str(exc.reason or exc)
    if "WRONG_VERSION_NUMBER" in reason or "record layer" in reason.lower():
        return (f"TLS handshake failed: {reason} (the server does not speak TLS on this "
                "port: a ws:// endpoint?)")
    return f"TLS handshake failed: {reason}"
