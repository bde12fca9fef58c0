"""Repro instrumentation (not part of the package): records every close() of an
SSLSocket that happens while another thread is inside an SSL call on it."""
from __future__ import annotations

import collections
import ssl
import threading
import traceback

EVENTS: list = []
_inflight: dict = collections.defaultdict(dict)  # id(sock) -> {thread ident: (op, fd)}
_guard = threading.Lock()


def _wrap(name):
    orig = getattr(ssl.SSLSocket, name)

    def wrapper(self, *args, **kwargs):
        me = threading.get_ident()
        key = id(self)
        with _guard:
            _inflight[key][me] = (name, self.fileno(), threading.current_thread().name)
        try:
            return orig(self, *args, **kwargs)
        finally:
            with _guard:
                _inflight[key].pop(me, None)
                if not _inflight[key]:
                    del _inflight[key]
    wrapper.__name__ = name
    setattr(ssl.SSLSocket, name, wrapper)


def _wrap_close(name):
    orig = getattr(ssl.SSLSocket, name)

    def wrapper(self, *args, **kwargs):
        me = threading.get_ident()
        with _guard:
            others = {t: v for t, v in _inflight.get(id(self), {}).items() if t != me}
            if others:
                EVENTS.append((name, self.fileno(), threading.current_thread().name,
                               list(others.values()),
                               "".join(traceback.format_stack(limit=8))))
        return orig(self, *args, **kwargs)
    setattr(ssl.SSLSocket, name, wrapper)


def install():
    for n in ("send", "sendall", "recv", "recv_into", "read", "write"):
        _wrap(n)
    _wrap_close("close")
    _wrap_close("_real_close")
