"""The example project's settings with its LOGGING entry removed: a Django
project that configures no logging for the library (tests/examples/test_logging_defaults.py)."""

from example_project.settings import *  # noqa: F403

LOGGING = {}
