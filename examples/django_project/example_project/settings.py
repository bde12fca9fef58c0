"""Settings of the example project: no database, one view, the Watchers app.

The credentials come from the environment (``WATCHERS_TOKEN``,
``WATCHERS_API_KEY``, ``WATCHERS_BOT_ID``, ``WATCHERS_URL``); anything set in
``WATCHERS`` below takes precedence over them.
"""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "watchers_bot.contrib.django",
]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"
DATABASES = {}
USE_TZ = True

WATCHERS = {
    # "TOKEN", "API_KEY", "BOT_ID", "URL"/"REGION": from the environment here.
    "ROOMS": ["room-1"],
    "HANDLER": "example_project.handlers.pong",
    "OPTIONS": {"ack_timeout": 10.0},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"watchers_bot": {"handlers": ["console"], "level": "WARNING"}},
}
