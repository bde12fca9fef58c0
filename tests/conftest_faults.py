"""Fixtures of the fault, fuzz and soak tests: ``pytest_plugins = ["conftest_faults"]``."""

import pytest
from faultkit import make_rig


@pytest.fixture
def proxied():
    """A :class:`faultkit.Rig`: an emulator with short pings (1 s + 1 s) recording
    what it writes to each socket, a fault proxy in front of it, and a factory of
    bots connected through the proxy.  Everything is closed and joined afterwards."""
    rig = make_rig()
    try:
        yield rig
    finally:
        rig.close()
    assert not rig.proxy.threads(), f"proxy threads left: {rig.proxy.threads()}"
