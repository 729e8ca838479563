"""The docs site (mkdocs.yml, docs/): its generated pages cover what they document.

The CLI reference and the option tables are made at build time by docs/hooks/ditto_docs.py;
these tests check that hook without mkdocs. The full strict build runs where mkdocs is
installed: `make test` installs the docs extra, so CI builds the site.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from ditto.cli import build_parser
from ditto.config import AgentConfig, WorldModelConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _load_hook():
    spec = importlib.util.spec_from_file_location(
        "ditto_docs_hook", DOCS / "hooks" / "ditto_docs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _load_hook()


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every command path below `parser`, found independently of the hook's own walk."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _commands(sub, (*path, name))


def test_cli_reference_covers_every_command():
    page = hook.cli_markdown()
    commands = list(_commands(build_parser()))
    paths = {path for path, _ in commands}
    assert {("collect",), ("train",), ("dataset", "info"), ("bench", "imagination")} <= paths
    for path, sub in commands:
        name = " ".join(("ditto", *path))
        assert re.search(rf"^#+ {re.escape(name)} \{{ #", page, re.MULTILINE), name
        assert f"usage: {name}" in page, name
        for action in sub._actions:  # every flag of every command is in its help
            for flag in action.option_strings:
                assert flag in page, f"{name} {flag}"


def test_option_tables_name_real_fields_and_every_field_with_a_star():
    table = hook.options_table("AgentConfig", ["horizon", "reward_match", "bc_augment"])
    assert "`--reward-match`" in table and "`--augment`" in table
    assert "| `horizon` | `--horizon` | `4` | `15` | `15` |" in table
    every = hook.options_table("WorldModelConfig", ["*"])
    assert all(f"| `{f.name}` |" in every for f in fields(WorldModelConfig))
    with pytest.raises(ValueError, match="no field"):
        hook.options_table("AgentConfig", ["no_such_setting"])


def test_every_option_table_in_the_pages_expands():
    placeholders = 0
    for page in DOCS.rglob("*.md"):
        text = page.read_text()
        placeholders += len(hook.OPTIONS.findall(text))
        expanded = hook.expand_options(text)
        assert "ditto-options" not in expanded, page
    assert placeholders >= 6  # four method pages, two on the config page
    every = hook.options_table("AgentConfig", ["*"])
    assert all(f"| `{f.name}` |" in every for f in fields(AgentConfig))


def test_repository_pages_link_into_the_site_or_name_the_file(tmp_path):
    docs = tmp_path / "docs"
    (docs / "img").mkdir(parents=True)
    (tmp_path / "notes").mkdir()
    page = tmp_path / "notes" / "page.md"
    page.write_text("![a](../docs/img/a.png) [b](../configs/b.yaml) [c](https://x.org) [d](#d)")
    text = hook.repository_page(page, docs)
    assert "![a](img/a.png)" in text
    assert "[c](https://x.org)" in text and "[d](#d)" in text
    assert "](../configs" not in text and "b (`" in text


def test_nav_names_only_pages_that_exist_or_are_generated():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(nav):
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from pages(value) if isinstance(value, list) else [value]

    listed = set(pages(config["nav"]))
    generated = set(hook.generated_pages(DOCS))
    written = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert listed <= written | generated, listed - written - generated
    assert written | generated <= listed, (written | generated) - listed


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs not installed (make docs installs it)",
)
def test_strict_build(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "cli" / "index.html").is_file()
