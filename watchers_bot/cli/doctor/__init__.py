"""``watchers-bot doctor``: check a configuration end to end, one line per check.

The checks follow the path of a connection: the configuration, the endpoint,
the proxy, DNS, TCP (and the proxy's tunnel), TLS (:mod:`.network`), then
Socket.IO connect and the token, listening and sending over a real bot
(:mod:`.session`).  A failure skips what depends on it, with the reason; the
exit code is 0 only if every check that ran passed.  Never prints a secret.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from ... import settings
from ...regions import DEFAULT_REGION, resolve_url
from ..commands.connect import layers, tls_overrides
from ..parser import EXIT_ERROR, EXIT_OK
from ..terminal import Secrets, one_line
from . import network, session
from .checks import FAIL, OK, SKIP, CheckFailed

if TYPE_CHECKING:
    from ...client.bot import Bot

__all__ = ["Doctor", "run"]

#: A check: returns ``(detail, value)`` or raises CheckFailed.
Check = Callable[[], Tuple[str, Any]]


class Doctor:
    """Runs the checks in order; each prints one line; a failure skips what depends on it."""

    def __init__(self, args: argparse.Namespace, secrets: Secrets) -> None:
        self.args = args
        self.secrets = secrets
        self.timeout: float = args.timeout
        self.results: List[str] = []
        self.found: Dict[str, settings.Found] = {}
        self.bot: Optional["Bot"] = None

    # -------------------------------------------------------------- output

    def line(self, status: str, name: str, detail: str) -> None:
        """Print one check's line (masked, on one line) and count its outcome."""
        self.results.append(status)
        text = one_line(self.secrets.mask(detail))
        print(f"{status:<4}  {name:<9}  {text}", flush=True)

    def check(self, name: str, fn: Check) -> Any:
        """Run ``fn``; print its line; its value (``True`` if none), ``None`` on failure."""
        try:
            detail, value = fn()
        except CheckFailed as exc:
            self.line(FAIL, name, str(exc))
            return None
        self.line(OK, name, detail)
        return value if value is not None else True

    def skip(self, names: Sequence[str], why: str) -> None:
        """Print a skip line for each of ``names``."""
        for name in names:
            self.line(SKIP, name, why)

    def value(self, key: str) -> Optional[str]:
        found = self.found[key]
        return found.value if found.source is not None else None

    # -------------------------------------------------------------- checks

    def configuration(self) -> Tuple[str, bool]:
        """Where each setting comes from, and which required ones are missing."""
        sources = layers(self.args)
        self.secrets.add(*settings.secret_values(sources))
        self.found = {s.key: settings.lookup(s, sources) for s in settings.BOT_SETTINGS}
        needed = list(settings.REQUIRED)
        if self.args.send:
            needed.append(settings.get("BOT_ID"))
        missing = [f"{s.what} ({s.env} or {s.option})" for s in needed
                   if self.found[s.key].source is None]
        if missing:
            raise CheckFailed("not set: " + ", ".join(missing))
        shown = [f"{f.setting.what} from {f.source}" for f in self.found.values()
                 if f.source is not None]
        if self.value("BOT_ID") is None:
            shown.append("no bot id (only needed to send)")
        return ", ".join(shown), True

    def endpoint(self) -> Tuple[str, Tuple[str, str, int, bool]]:
        """The URL the bot would use, from --url/--region (or their variables)."""
        region, url = self.value("REGION"), self.value("URL")
        try:
            resolved = resolve_url(region or DEFAULT_REGION, url)
            parts = urlsplit(resolved)
            secure = parts.scheme.lower() in ("wss", "https")
            port = parts.port or (443 if secure else 80)
        except (ValueError, TypeError) as exc:
            raise CheckFailed(str(exc)) from None
        if not self.args.allow_insecure and settings.is_insecure_remote(resolved):
            raise CheckFailed(
                f"{resolved} is unencrypted and not on this machine: the token would travel "
                "in clear; use wss:// (or pass --allow-insecure)"
            )
        host = parts.hostname or ""
        if url is not None:
            origin = f"from {self.found['URL'].source}"
            if region is not None:
                origin += f"; {self.found['REGION'].source} ignored"
        else:
            where = f"from {self.found['REGION'].source}" if region is not None else "the default"
            origin = f"region {(region or DEFAULT_REGION).strip().lower()}, {where}"
        return f"{resolved} ({origin})", (resolved, host, port, secure)

    def connect(self, url: str) -> Tuple[str, "Bot"]:
        """Socket.IO connect with the token (the bot is closed by :meth:`run`)."""
        options = dict(tls_overrides(self.args))
        options["connect_timeout"] = self.args.connect_timeout or self.timeout
        detail, bot = session.connect(
            url, self.value("TOKEN") or "", self.value("API_KEY") or "", self.value("BOT_ID"),
            timeout=self.timeout, options=options)
        self.bot = bot
        return detail, bot

    # -------------------------------------------------------------- the run

    def run(self) -> int:
        """Run every check that can run; print the summary; the exit code."""
        args = self.args
        if args.send is not None and args.room is None:
            raise ValueError("doctor --send needs --room ROOM (where to post)")
        try:
            self._run()
        finally:
            if self.bot is not None:
                self.bot.close()
        failed = self.results.count(FAIL)
        passed = self.results.count(OK)
        skipped = self.results.count(SKIP)
        if failed:
            print(f"{failed} check(s) failed, {passed} passed, {skipped} skipped", flush=True)
            return EXIT_ERROR
        print(f"all {passed} check(s) passed, {skipped} skipped", flush=True)
        return EXIT_OK

    def _run(self) -> None:
        args, timeout = self.args, self.timeout
        later = ["socket.io", "listen", "send"]
        configured = self.check("config", self.configuration)
        endpoint = self.check("endpoint", self.endpoint)
        if not endpoint:
            self.skip(["proxy", "dns", "tcp", "tls", *later], "needs a valid endpoint")
            return
        url, host, port, secure = endpoint
        via = self.check("proxy", lambda: network.proxy(host, port, secure, self.secrets.add))
        if via is None:
            self.skip(["dns", "tcp", "tls", *later], "needs a usable proxy setting")
            return
        via = via if isinstance(via, network.Proxy) else None
        infos = self.check("dns", lambda: network.dns(host, port, via, timeout))
        if not infos:
            self.skip(["tcp", "tls", *later], "needs the host's address")
            return
        raw = self.check("tcp", lambda: network.tcp(host, port, infos, via, timeout))
        if not raw:
            self.skip(["tls", *later], "needs a TCP connection")
            return
        try:
            if secure:
                tls = self.check("tls", lambda: network.tls(
                    raw, host, verify=args.verify_ssl, ca_certs=args.ca_certs))
                if tls:
                    with contextlib.suppress(OSError):
                        tls.close()
                else:
                    self.skip(later, "needs a trusted TLS connection")
                    return
            else:
                self.skip(["tls"], f"{urlsplit(url).scheme}:// is unencrypted")
        finally:
            with contextlib.suppress(OSError):
                raw.close()  # the probe's connection; the bot opens its own
        if not configured:
            self.skip(later, "needs the token and API key")
            return
        bot = self.check("socket.io", lambda: self.connect(url))
        if not bot:
            self.skip(["listen", "send"], "needs a Socket.IO connection")
            return
        if args.room is None:
            self.skip(["listen"], "pass --room ROOM to check listening (and the API key)")
        elif not self.check("listen", lambda: session.listen(bot, args.room, timeout)):
            self.skip(["send"], "needs listening to work")
            return
        if args.send is None:
            self.skip(["send"], "pass --send TEXT (with --room) to post a test message")
        else:
            self.check("send", lambda: session.send(bot, args.room, args.send, timeout))


def run(args: argparse.Namespace, secrets: Secrets) -> int:
    """``watchers-bot doctor``: 0 if every check that ran passed, else 1."""
    return Doctor(args, secrets).run()
