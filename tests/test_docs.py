"""The documentation builds with Sphinx, warnings as errors (when Sphinx is installed).

The ``docs`` extra installs Sphinx (``pip install -e '.[docs]'``, included in
``dev``); without it this test is skipped.  The build runs in a subprocess,
into a temporary directory, so the tree is left untouched.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BUILD_TIMEOUT = 240.0

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sphinx") is None,
    reason="Sphinx is not installed (pip install -e '.[docs]')",
)


@pytest.mark.timeout(BUILD_TIMEOUT + 30)
def test_docs_build_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "html"
    env = {**os.environ, "NO_COLOR": "1", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    pages = ["index", "api", "errors", "logging", "cli", "guide/notebooks", "guide/scripts",
             "guide/flask", "guide/django", "guide/testing", "guide/tls-proxy"]
    for page in pages:
        assert (out / f"{page}.html").is_file(), page
    api = (out / "api.html").read_text(encoding="utf-8")
    for name in ("Bot", "Message", "Stats", "Health", "HandlerThread", "AckFuture", "State",
                 "ConnectFailed", "Emulator"):
        ids = (f'id="watchers_bot.{name}"', f'id="watchers_bot.emulator.{name}"')
        assert any(i in api for i in ids), name
    cli = (out / "cli.html").read_text(encoding="utf-8")
    assert "watchers-bot doctor" in cli
    assert "--pretty" in cli  # the generated --help of listen
