"""The Django app config: ``"watchers_bot.contrib.django"`` in ``INSTALLED_APPS``."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class WatchersBotConfig(AppConfig):
    """Registers the ``runbot`` command and resets the bot when ``WATCHERS`` changes.

    Deliberately does *not* connect in :meth:`ready`: ``ready()`` runs in every
    ``manage.py`` command (``migrate``, ``shell``...) and in ``runserver``'s
    autoreloader parent, none of which should open a connection.
    """

    name = "watchers_bot.contrib.django"
    label = "watchers_bot"
    verbose_name = "Watchers.io bot"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        setting_changed.connect(_on_setting_changed, dispatch_uid="watchers_bot.setting_changed")


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "WATCHERS":  # e.g. override_settings in tests: next use builds a new bot
        from . import close_bot

        close_bot()
