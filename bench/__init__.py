"""Benchmarks of watchers_bot against raw python-socketio and npm socket.io-client.

Run ``python -m bench`` (or ``python -m bench --quick``) from the repository root;
see ``bench/run.py`` and BENCHMARKS.md.
"""
