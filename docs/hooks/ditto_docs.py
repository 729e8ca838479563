"""MkDocs hook: the pages that are made from the code at build time, so they cannot drift.

- `cli.md`: every `ditto` command's `--help`, walked from `ditto.cli.build_parser()`.
- option tables: a line `<!-- ditto-options DittoConfig horizon batch ... -->` (or `*` for
  every field) in a page becomes a table of those config fields with their CLI flag, their
  default in each preset and the comment beside them where they are declared (the CLI's help
  reads the same comments, ditto.config.field_docs). The config is WorldModelConfig, a
  method's (DittoConfig, ...), or AgentConfig: every method's settings.
- `results.md`: the published results, from the repository's `results/*.json`
  (ditto.experiments.report.results_page); a line `<!-- ditto-results ALGO -->` in a page
  becomes that method's rows in them (method_table). `ditto report --readme` makes the
  README's table from the same files.
- `changelog.md`: `CHANGELOG.md` from the repository root, its links outside the site
  rewritten.

The functions below need only `ditto` (not mkdocs), so `tests/test_docs.py` can check
them without the docs extra installed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
try:
    import ditto  # noqa: F401  (installed with the package, as `make docs` does)
except ImportError:  # a plain checkout: the source tree
    sys.path.insert(0, str(ROOT / "src"))

OPTIONS = re.compile(r"^<!-- ditto-options (\w+) ([\w* ]+?) -->$", re.MULTILINE)
RESULTS = re.compile(r"^<!-- ditto-results (\w+) -->$", re.MULTILINE)
HELP_WIDTH = "100"


# --- the CLI reference ------------------------------------------------------------------


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, help, parser) of each subcommand of `parser`, in the order they were added."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            found += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return found


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str, argparse.ArgumentParser]]:
    """Every command below `parser`, depth first: (words after `ditto`, help, its parser)."""
    for name, helptext, sub in subcommands(parser):
        yield (*path, name), helptext, sub
        yield from walk(sub, (*path, name))


def _help(parser: argparse.ArgumentParser) -> str:
    """`--help` at a fixed width, whatever the terminal (argparse reads COLUMNS)."""
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        return parser.format_help().rstrip()
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def cli_markdown(parser: argparse.ArgumentParser | None = None) -> str:
    """The CLI reference page: a table of the commands, then each command's `--help`."""
    if parser is None:
        from ditto.cli import build_parser

        parser = build_parser()
    commands = list(walk(parser))
    lines = [
        "# CLI reference",
        "",
        "Generated from `ditto.cli.build_parser()` when the site is built, so it is",
        "the `--help` of the installed version. Every command prints one line starting",
        "with `error:` and exits with status 2 on a mistake in its input.",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for path, helptext, _ in commands:
        name = " ".join(("ditto", *path))
        escaped = helptext.replace("|", "\\|")
        lines.append(f"| [`{name}`](#{_anchor(path)}) | {escaped} |")
    lines += ["", "## ditto", "", "```text", _help(parser), "```", ""]
    for path, helptext, sub in commands:
        heading = "#" * min(len(path) + 1, 4)
        lines += [
            f"{heading} ditto {' '.join(path)} {{ #{_anchor(path)} }}",
            "",
            f"{helptext[:1].upper()}{helptext[1:]}." if helptext else "",
            "",
            "```text",
            _help(sub),
            "```",
            "",
        ]
    return "\n".join(lines)


def _anchor(path: tuple[str, ...]) -> str:
    return "ditto-" + "-".join(path)


# --- option tables from the config dataclasses -------------------------------------------


def _flags(command: str) -> dict[str, str]:
    """Config field -> the flag of `ditto COMMAND` that sets it (each flag's dest is its field)."""
    from ditto.cli import build_parser

    parser = {path: sub for path, _, sub in walk(build_parser())}[(command,)]
    flags = {}
    for action in parser._actions:
        long = [s for s in action.option_strings if s.startswith("--")]
        if long and action.dest not in ("help", "set"):
            flags[action.dest] = long[0]
    return flags


def options_table(config: str, names: list[str]) -> str:
    """A markdown table of the named fields of `config`: WorldModelConfig, a method's config
    (DittoConfig, ...) or AgentConfig, every setting of every method; `*` names them all, in
    their order in the dataclasses."""
    values, comments, command = _settings(config)
    names = list(values) if names == ["*"] else names
    unknown = [name for name in names if name not in values]
    if unknown:
        raise ValueError(f"ditto-options: {config} has no field(s) {unknown}")
    flags = _flags(command)
    presets = next(iter(values.values()))
    header = ["setting", "flag", *presets, "what"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        flag = flags.get(name, f"--set {name}=")
        defaults = [f"`{_value(value)}`" for value in values[name].values()]
        what = comments[name].replace("|", "\\|")
        lines.append(f"| `{name}` | `{flag}` | " + " | ".join(defaults) + f" | {what} |")
    return "\n".join(lines)


def _settings(config: str) -> tuple[dict[str, dict[str, object]], dict[str, str], str]:
    """Each field of `config` with its value in each preset and its comment (where its class
    declares it: ditto.config.field_docs), and the command that takes them. AgentConfig covers
    every registered method's config (a field shared by several, from the first that has it)."""
    from ditto.agents.registry import METHODS, method_settings
    from ditto.config import WORLD_MODEL_PRESETS, WorldModelConfig, field_docs

    command, presets = "train", None
    if config == "WorldModelConfig":
        owners = {f.name: WorldModelConfig for f in fields(WorldModelConfig)}
        command, presets = "train-world-model", {WorldModelConfig: WORLD_MODEL_PRESETS}
    elif config == "AgentConfig":
        owners = method_settings()
    else:
        chosen = [m.config for m in METHODS.values() if m.config.__name__ == config]
        owners = {f.name: chosen[0] for f in fields(chosen[0])} if chosen else {}
    if not owners:
        known = ["WorldModelConfig", "AgentConfig", *(m.config.__name__ for m in METHODS.values())]
        raise ValueError(f"ditto-options: unknown config {config!r}; one of {known}")
    presets = presets or {cls: cls.presets() for cls in set(owners.values())}
    values = {
        name: {preset: getattr(c, name) for preset, c in presets[cls].items()}
        for name, cls in owners.items()
    }
    comments = {name: field_docs(cls)[name] for name, cls in owners.items()}
    return values, comments, command


def _value(value) -> str:
    return "()" if value == () else repr(value)


def expand_options(markdown: str) -> str:
    """Every `<!-- ditto-options CONFIG field ... -->` line replaced by its table, and every
    `<!-- ditto-results ALGO -->` by that method's published results."""
    markdown = OPTIONS.sub(lambda m: options_table(m[1], m[2].split()), markdown)
    if RESULTS.search(markdown):
        from ditto.experiments.report import method_table

        published = _published()
        markdown = RESULTS.sub(lambda m: method_table(published, m[1]), markdown)
    return markdown


# --- the results, from results/*.json ----------------------------------------------------


def _published() -> list[dict]:
    from ditto.experiments.report import load_published

    return load_published(ROOT / "results")


def results_markdown() -> str:
    """The results page, made from the published results files."""
    from ditto.experiments.report import results_page

    return results_page(_published())


# --- pages copied from the repository ----------------------------------------------------

LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def repository_page(path: Path, docs_dir: Path) -> str:
    """A markdown file from outside the docs folder, as a page at the site's root: links
    into docs/ are made relative to it; other relative links (files not in the site)
    become their path in the repository, as code."""

    def rewrite(match: re.Match) -> str:
        bang, text, target = match.groups()
        if re.match(r"^[a-z]+:|^#", target):
            return match[0]
        resolved = (path.parent / target).resolve()
        if resolved.is_relative_to(docs_dir.resolve()):
            return f"{bang}[{text}]({resolved.relative_to(docs_dir.resolve()).as_posix()})"
        where = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else target
        return f"{text} (`{where}`)"

    return LINK.sub(rewrite, path.read_text())


def generated_pages(docs_dir: Path) -> dict[str, str]:
    """Path in the site -> markdown of every generated page."""
    copied = {"changelog.md": "CHANGELOG.md"}
    missing = [path for path in copied.values() if not (ROOT / path).is_file()]
    if missing:  # moved or renamed: say where to follow it, not a traceback
        raise FileNotFoundError(
            f"{missing} not found; docs/hooks/ditto_docs.py copies them into the site "
            "(generated_pages): point it at their new place"
        )
    pages = {uri: repository_page(ROOT / path, docs_dir) for uri, path in copied.items()}
    return {"cli.md": cli_markdown(), "results.md": results_markdown(), **pages}


# --- the mkdocs events -------------------------------------------------------------------


def on_files(files, config):
    from mkdocs.structure.files import File

    for uri, content in generated_pages(Path(config["docs_dir"])).items():
        files.append(File.generated(config, uri, content=content))
    return files


def on_page_markdown(markdown, page, config, files):
    return expand_options(markdown)
