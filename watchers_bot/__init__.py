"""watchers_bot: a synchronous Python client for the Watchers.io bot API."""

__version__ = "0.1.0"
