"""The bot of ``listen`` and ``send``: options first, then the ``WATCHERS_*`` variables."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Dict, List

from ... import settings
from ..terminal import Secrets

if TYPE_CHECKING:
    from ...client.bot import Bot

__all__ = ["bot_from_args", "layers", "tls_overrides"]


def layers(args: argparse.Namespace) -> List[settings.Layer]:
    """Where the CLI looks for a setting: its option (``--token``), then its variable."""
    options = settings.Layer(
        lambda s: getattr(args, s.argument, None) if s.argument else None,
        lambda s: s.option,
    )
    return [options, settings.env_layer()]


def bot_from_args(args: argparse.Namespace, secrets: Secrets, *,
                  needs_bot_id: bool = False) -> "Bot":
    """A bot from the options and the environment; ``ConfigError`` names what is missing."""
    from ...client.bot import Bot

    sources = layers(args)
    secrets.add(*settings.secret_values(sources))
    for setting in settings.BOT_SETTINGS:  # an option given blank is a mistake, not "unset"
        value = getattr(args, setting.argument or "", None)
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"{setting.option} is empty: give a value or leave the option "
                             f"out (then {setting.env} is used)")
    need = settings.REQUIRED + ((settings.get("BOT_ID"),) if needs_bot_id else ())
    kwargs = settings.bot_arguments(
        sources, lambda s: f"export it or pass {s.option} ({s.why})", need=need)
    if args.connect_timeout is not None:
        kwargs["connect_timeout"] = args.connect_timeout
    kwargs.update(tls_overrides(args))
    if getattr(args, "include_own", False):
        kwargs["include_own"] = True
    return Bot(kwargs.pop("token"), kwargs.pop("api_key"), kwargs.pop("bot_id", None), **kwargs)


def tls_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """The Bot arguments of --ca-certs, --no-verify-ssl and --allow-insecure."""
    overrides: Dict[str, Any] = {}
    if args.ca_certs is not None:
        overrides["ca_certs"] = args.ca_certs
    if not args.verify_ssl:
        overrides["verify_ssl"] = False
    if args.allow_insecure:
        overrides["allow_insecure"] = True
    return overrides
