"""Tests of the Celery bridge (watchers_bot/contrib/celery/) with real redis-server and
real ``celery worker`` processes."""
