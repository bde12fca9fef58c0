"""Sphinx configuration of the watchers-bot documentation.

Build (warnings are errors)::

    python -m pip install -e '.[docs]'
    python -m sphinx -W --keep-going -b html docs docs/_build/html

No extension here needs the network (no intersphinx).
"""

from __future__ import annotations

import os
import sys
from typing import Any, List

from docutils import nodes
from docutils.parsers.rst import Directive, directives

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import watchers_bot  # noqa: E402

project = "watchers-bot"
author = "the watchers-bot authors"
copyright = "2026, the watchers-bot authors"
release = watchers_bot.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: List[str] = []
default_role = "code"  # `x` is inline code, as in the README
highlight_language = "python3"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
# The integrations and the pytest plugin are documented without installing the
# frameworks (or pytest): the docs extra needs only Sphinx and the theme.
autodoc_mock_imports = ["flask", "click", "django", "pytest"]
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
}

try:
    import furo  # noqa: F401
except ImportError:  # the docs extra installs furo; sphinx's bundled theme otherwise
    html_theme = "alabaster"
else:
    html_theme = "furo"
html_title = f"watchers-bot {release}"
html_static_path: List[str] = []


class CliHelp(Directive):
    """``.. cli-help:: listen``: the ``--help`` text of a command, generated at build time.

    Keeps the CLI page in step with ``watchers_bot.cli.build_parser()``.
    """

    optional_arguments = 1
    has_content = False
    option_spec = {"width": directives.positive_int}

    def run(self) -> List[Any]:
        from watchers_bot.cli.parser import build_parser, command_parser

        os.environ["COLUMNS"] = str(self.options.get("width", 88))
        os.environ["NO_COLOR"] = "1"  # Python 3.14's argparse colours its help otherwise
        if self.arguments:
            text = command_parser(self.arguments[0]).format_help()
        else:
            text = build_parser().format_help()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


class SettingsTable(Directive):
    """``.. watchers-settings::``: the table of ``WATCHERS_*`` settings, from
    ``watchers_bot.settings.SETTINGS`` (their one home), generated at build time."""

    has_content = False

    def run(self) -> List[Any]:
        from docutils.statemachine import StringList

        from watchers_bot import settings

        def code(value: Any) -> str:
            return "—" if value is None else f"``{value}``"

        lines = [".. list-table::", "   :header-rows: 1", "",
                 "   * - Variable", "     - ``Bot`` argument", "     - Kind",
                 "     - Default", "     - What it is for"]
        for setting in settings.SETTINGS:
            kind = setting.kind + (", required" if setting.required else "")
            lines += [f"   * - ``{setting.env}``", f"     - {code(setting.argument)}",
                      f"     - {kind}", f"     - {code(setting.default)}",
                      f"     - {setting.why}"]
        container = nodes.container()
        self.state.nested_parse(StringList(lines), self.content_offset, container)
        return list(container.children)


def setup(app: Any) -> None:
    app.add_directive("cli-help", CliHelp)
    app.add_directive("watchers-settings", SettingsTable)
