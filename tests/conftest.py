"""Shared fixtures.  The emulator serves on 127.0.0.1: keep proxies out of the way."""

import os

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")

import pytest


@pytest.fixture
def emulator():
    """A running emulator accepting token ``test-token`` and API key ``test-key``."""
    # imported here: the client's lower-bound run (.ci/run) has no emulator
    from watchers_bot.emulator import Emulator

    emu = Emulator(tokens=["test-token"], api_keys=["test-key"]).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="module")
def ca():
    """A certificate authority of the test's own (``trustme``), for TLS servers on loopback."""
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture
def ca_file(ca, tmp_path):
    """``ca``'s certificate as a PEM file, for ``ca_certs=`` and ``--ca-certs``."""
    path = os.path.join(tmp_path, "ca.pem")
    ca.cert_pem.write_to_path(path)
    return path
