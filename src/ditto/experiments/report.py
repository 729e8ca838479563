"""The results report of a directory of evaluated runs: a table, figures, GIFs, in Markdown and HTML.

    write_report(Path("runs/grid"))   # -> results.json, figures/, report.md, report.html

Inputs are the files the library already writes: each agent run's config.json,
metrics.jsonl and eval.json (from `ditto evaluate RUN --save`), and each world-model
run's diagnostics/open_loop.gif. Both documents are rendered from one list of
blocks, so their content cannot drift apart; the HTML page embeds every image
and stands alone (it can be mailed or attached).
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
import os
import platform
import re
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ditto.agents.registry import METHODS
from ditto.errors import DittoError
from ditto.evaluation.protocol import aggregate, recorded_protocol, setting_of, standard_error
from ditto.io import atomic_write_bytes, atomic_write_json
from ditto.runs import (
    CONFIG,
    EVAL,
    METRICS,
    PATHS_KEY,
    PATHS_RELATIVE_TO_RUN,
    input_path,
    read_metrics,
)

FIGURES = "figures"
REQUIRED = {
    "env_id",
    "algo",
    "expert_episodes",
    "seed",
    "return_mean",
    "normalized_score",
    "returns",
}


# ----- results ---------------------------------------------------------------------------------
def collect_results(root: Path) -> list[dict[str, Any]]:
    """Every eval.json under `root`, each with "run_dir": the directory it was found in."""
    results = []
    for path in sorted(Path(root).rglob(EVAL)):
        result = _read_json(path)
        missing = REQUIRED - set(result) if isinstance(result, dict) else REQUIRED
        if missing:
            raise DittoError(f"{path}: not a ditto evaluation (missing {sorted(missing)})")
        results.append({**result, "run_dir": str(path.parent)})
    return results


def summarize(evals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (env_id, algo, expert_episodes), aggregated over the runs (seeds)."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    seen: dict[tuple, str] = {}
    sticky: dict[str, dict[bool, str]] = defaultdict(dict)
    for result in evals:
        # one env's table and figure compare methods, so all of them play the same game
        scored_sticky = sticky[result["env_id"]]
        scored_sticky.setdefault(recorded_protocol(result)["sticky_actions"], result["run_dir"])
        if len(scored_sticky) == 2:
            raise DittoError(
                f"{scored_sticky[False]} was scored without sticky actions and "
                f"{scored_sticky[True]} with them; report them separately, or score them alike "
                "(`ditto evaluate RUN ... --save`, with or without --sticky-actions)"
            )
        key = setting_of(result)
        twin = seen.setdefault((*key, result["seed"]), result["run_dir"])
        if twin != result["run_dir"]:  # e.g. two presets of one grid: their rows must not mix
            raise DittoError(
                f"{twin} and {result['run_dir']} are the same cell ({', '.join(map(str, key))}, seed "
                f"{result['seed']}); report their directories separately"
            )
        groups[key].append(result)
    rows = [_summary_row(*key, runs) for key, runs in groups.items()]
    for row in rows:
        row["sticky_actions"] = next(iter(sticky[row["env_id"]]))
    return sorted(rows, key=lambda r: (r["env_id"], _method_rank(r["algo"]), r["expert_episodes"]))


def _summary_row(
    env_id: str, algo: str, expert_episodes: int, runs: list[dict[str, Any]]
) -> dict[str, Any]:
    runs = sorted(runs, key=lambda r: r["seed"])
    scores = [r["normalized_score"] for r in runs]
    stats = aggregate(runs)
    return {
        "env_id": env_id,
        "algo": algo,
        "expert_episodes": expert_episodes,
        "seeds": len(runs),
        "seed_list": [r["seed"] for r in runs],
        "seed_returns": [r["return_mean"] for r in runs],
        "seed_scores": scores,
        "return_mean": float(np.mean([r["return_mean"] for r in runs])),
        "return_stderr": _pooled_stderr(runs),
        "normalized_score": float(np.mean(scores)),
        "iqm_normalized_score": stats["iqm_normalized_score"],
        "iqm_ci95": stats["iqm_ci95"],
        "expert_return": float(np.mean([r["expert_return"] for r in runs])),
        "random_return": float(np.mean([r["random_return"] for r in runs])),
        "episodes": int(sum(r["episodes"] for r in runs)),
    }


def _pooled_stderr(runs: list[dict[str, Any]]) -> float:
    """Standard error over every episode of every seed."""
    return standard_error(np.concatenate([np.asarray(r["returns"], dtype=float) for r in runs]))


def _method_rank(algo: str) -> int:
    """Methods in the order they registered; runs of a method not registered here come last."""
    return list(METHODS).index(algo) if algo in METHODS else len(METHODS)


def _label(algo: str) -> str:
    return METHODS[algo].label if algo in METHODS else algo


def _color(algo: str) -> str | None:
    return METHODS[algo].color if algo in METHODS else None


def _algos(items: list[dict[str, Any]]) -> list[str]:
    return sorted({item["algo"] for item in items}, key=lambda a: (_method_rank(a), a))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DittoError(f"{path}: cannot read it as JSON ({exc})") from None


# ----- figures ---------------------------------------------------------------------------------
def _save_figure(fig: Any, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def _error_bar(row: dict[str, Any]) -> tuple[float, float]:
    """Below/above the plotted IQM: its 95% CI, or for one run its stderr in score units."""
    if row["seeds"] >= 2:
        (low, high), iqm = row["iqm_ci95"], row["iqm_normalized_score"]
        return max(iqm - low, 0.0), max(high - iqm, 0.0)
    span = row["expert_return"] - row["random_return"]
    half = row["return_stderr"] / abs(span) if abs(span) > 1e-8 else float("nan")
    return half, half


def score_figure(env_id: str, rows: list[dict[str, Any]], path: Path) -> None:
    """Expert-normalised score (IQM over seeds) against the number of expert episodes."""
    # Figure without pyplot: no global backend switch, no GUI, safe in threads and servers.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    for algo in _algos(rows):
        mine = sorted((r for r in rows if r["algo"] == algo), key=lambda r: r["expert_episodes"])
        bars = np.array([_error_bar(r) for r in mine]).T
        ax.errorbar(
            [r["expert_episodes"] for r in mine],
            [r["iqm_normalized_score"] for r in mine],
            yerr=bars,
            marker="o",
            capsize=3,
            label=_label(algo),
            color=_color(algo),
        )
    ax.axhline(1.0, ls="--", color="tab:gray", lw=1, label="expert")
    ax.axhline(0.0, ls="--", color="black", lw=1, label="random")
    n_values = sorted({r["expert_episodes"] for r in rows})
    if len(n_values) > 2:
        ax.set_xscale("log")
    ax.set_xticks(n_values, [str(n) for n in n_values])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("expert episodes $N_E$")
    ax.set_ylabel("expert-normalised score (IQM, 95% CI)")
    ax.set_title(env_id)
    ax.legend(fontsize="small")
    _save_figure(fig, path)


def _mean_curve(curves: list[list[tuple[int, float]]]) -> tuple[list[int], list[float]]:
    """Mean over runs at each step (steps a run lacks are averaged over the others)."""
    by_step: dict[int, list[float]] = defaultdict(list)
    for curve in curves:
        for step, value in curve:
            by_step[step].append(value)
    steps = sorted(by_step)
    return steps, [float(np.mean(by_step[s])) for s in steps]


def _metric_curve(run_dir: Path, key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in read_metrics(run_dir / METRICS) if key in r]


def training_figure(env_id: str, evals: list[dict[str, Any]], path: Path) -> int:
    """Real return per evaluated checkpoint (left) and held-out latent distance (right), per
    method, averaged over seeds, for the largest N_E; returns that N_E."""
    from matplotlib.figure import Figure

    runs = [e for e in evals if e["env_id"] == env_id]
    largest = max(e["expert_episodes"] for e in runs)
    runs = [e for e in runs if e["expert_episodes"] == largest]
    fig = Figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2)
    for algo in _algos(runs):
        mine = [e for e in runs if e["algo"] == algo]
        steps, returns = _mean_curve(
            [[(c["step"], c["return_mean"]) for c in e.get("checkpoints", [])] for e in mine]
        )
        left.plot(steps, returns, marker="o", label=_label(algo), color=_color(algo))
        steps, distances = _mean_curve(
            [_metric_curve(Path(e["run_dir"]), "val/latent_distance") for e in mine]
        )
        if steps:  # methods without a latent space (pixel BC) log no latent distance
            right.plot(steps, distances, label=_label(algo), color=_color(algo))
    left.axhline(
        np.mean([e["expert_return"] for e in runs]), ls="--", color="tab:gray", lw=1, label="expert"
    )
    left.axhline(
        np.mean([e["random_return"] for e in runs]), ls="--", color="black", lw=1, label="random"
    )
    left.set(
        xlabel="update",
        ylabel="return in the real env",
        title=f"{env_id}: checkpoints ($N_E$={largest})",
    )
    right.set(
        xlabel="update", ylabel="held-out latent distance", title="distance to expert latents"
    )
    for ax in (left, right):
        if ax.lines:
            ax.legend(fontsize="small")
    if not right.lines:
        right.text(
            0.5, 0.5, "no world-model runs", ha="center", va="center", transform=right.transAxes
        )
    _save_figure(fig, path)
    return largest


# ----- documents: one list of blocks, two renderings ---------------------------------------------
@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    caption: str
    path: str  # relative to the report's directory


@dataclass
class Code:
    text: str
    language: str = ""


def to_markdown(blocks: list[Any]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            lines = [block.header, ["---"] * len(block.header), *block.rows]
            parts.append(
                "\n".join(
                    "| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in lines
                )
            )
        elif isinstance(block, Image):
            parts.append(f"![{block.caption}]({block.path})")
        elif isinstance(block, Code):
            parts.append(f"```{block.language}\n{block.text}\n```")
    return "\n\n".join(parts) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; } figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; } code { background: #f6f6f6; }
"""

_MIME = {".png": "image/png", ".gif": "image/gif"}  # what the report writes


def _inline(text: str) -> str:
    """Escape for HTML, keeping Markdown's `code` spans (the only inline markup notes use)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def to_html(blocks: list[Any], title: str, base: Path) -> str:
    """A self-contained page: images (relative to `base`) are embedded as data URIs."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(c)}</th>" for c in block.header)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                for row in block.rows
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Image):
            path = base / block.path
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
            caption = html.escape(block.caption)
            parts.append(
                f'<figure><img src="data:{mime};base64,{data}" alt="{caption}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        elif isinstance(block, Code):
            parts.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n"
    )


# ----- the report ------------------------------------------------------------------------------
def _number(value: float, digits: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _results_table(rows: list[dict[str, Any]]) -> Table:
    header = ["method", "N_E", "seeds", "return ± stderr", "normalised score", "IQM [95% CI]"]
    cells = [
        [
            _label(r["algo"]),
            str(r["expert_episodes"]),
            str(r["seeds"]),
            f"{_number(r['return_mean'], 1)} ± {_number(r['return_stderr'], 1)}",
            _number(r["normalized_score"], 2),
            f"{_number(r['iqm_normalized_score'], 2)} "
            f"[{_number(r['iqm_ci95'][0], 2)}, {_number(r['iqm_ci95'][1], 2)}]",
        ]
        for r in rows
    ]
    return Table(header, cells)


def _run_configs(evals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The config.json of each evaluated run that has one, its world model's path resolved
    against the run's location (config.json records it relative to the run)."""
    configs = []
    for run in (Path(e["run_dir"]) for e in evals):
        if (run / CONFIG).is_file():
            config = _read_json(run / CONFIG)
            if isinstance(config.get("world_model"), str):
                legacy = config.get(PATHS_KEY) != PATHS_RELATIVE_TO_RUN
                config["world_model"] = str(input_path(run, config["world_model"], legacy))
            configs.append(config)
    return configs


def _world_models(root: Path, configs: list[dict[str, Any]]) -> dict[str, Path]:
    """env_id -> a world-model run with an open-loop GIF: one the agents used if it is still
    there, else one found under root."""
    used = [Path(c["world_model"]) for c in configs if c.get("world_model")]
    below = [p.parent for p in sorted(root.rglob(CONFIG))]
    found: dict[str, Path] = {}
    for run in used + below:
        config_path = run / CONFIG
        if not (run / "diagnostics" / "open_loop.gif").is_file() or not config_path.is_file():
            continue
        config = _read_json(config_path)
        if config.get("kind") == "world_model":
            found.setdefault(config["env"]["env_id"], run)
    return found


def _shown(path: Path, root: Path) -> str:
    """`path` relative to the report when it lies below it (the report may move)."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _figure_file(source: Path, caption: str, figures: Path) -> str:
    """`source` as a file in figures/ (copied there unless it is there already), relative to
    the report."""
    if not source.is_file():
        raise DittoError(f"{source}: no such GIF (for {caption!r})")
    if source.resolve().parent != figures.resolve():
        target = figures / f"{_slug(caption)}{source.suffix or '.gif'}"
        _copy(source, target)
        source = target
    return f"{FIGURES}/{source.name}"


def _copy(source: Path, target: Path) -> None:
    # Through atomic_write_bytes, so that a reader never sees half a GIF.
    atomic_write_bytes(target, Path(source).read_bytes())


def write_report(
    root: Path,
    *,
    title: str = "ditto results",
    notes: list[str] | None = None,
    extra_gifs: dict[str, Path] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write results.json, figures/, report.md and report.html into `root` (see the module doc)."""
    root = Path(root)
    if not root.is_dir():
        raise DittoError(f"{root}: no such directory; give the folder that holds the runs")
    evals = collect_results(root)
    if not evals:
        raise DittoError(
            f"{root}: no evaluated runs (eval.json) found; run `ditto evaluate RUN --save` or `ditto sweep` first"
        )
    rows = summarize(evals)
    atomic_write_json(root / "results.json", _json_safe(rows))
    if config is None and (root / "grid.json").is_file():  # a sweep's directory
        config = _read_json(root / "grid.json")
    configs = _run_configs(evals)
    world_models = _world_models(root, configs)

    blocks: list[Any] = [Heading(1, title)]
    for env_id in sorted({r["env_id"] for r in rows}):
        env_rows = [r for r in rows if r["env_id"] == env_id]
        blocks += _env_blocks(root, env_id, env_rows, evals, world_models.get(env_id))
    if extra_gifs:
        blocks.append(Heading(2, "Episodes"))
        for caption, source in extra_gifs.items():
            blocks.append(Image(caption, _figure_file(Path(source), caption, root / FIGURES)))
    if notes:
        blocks += [Heading(2, "Notes"), *(Paragraph(note) for note in notes)]
    blocks += _configuration(config, configs)

    report, page = root / "report.md", root / "report.html"
    atomic_write_bytes(report, to_markdown(blocks).encode())
    atomic_write_bytes(page, to_html(blocks, title, root).encode())
    return {"results": rows, "report": report, "html": page}


def _json_safe(value: Any) -> Any:
    """NaN (a normalised score when expert and random tie) as null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _env_blocks(
    root: Path,
    env_id: str,
    rows: list[dict[str, Any]],
    evals: list[dict[str, Any]],
    world_model: Path | None,
) -> list[Any]:
    """One env's section: returns, the table, its two figures and the world model's GIF."""
    slug, figures = _slug(env_id), root / FIGURES
    expert = _number(np.mean([r["expert_return"] for r in rows]), 1)
    random = _number(np.mean([r["random_return"] for r in rows]), 1)
    score_png, training_png = f"score_vs_expert_episodes_{slug}.png", f"training_{slug}.png"
    score_figure(env_id, rows, figures / score_png)
    largest = training_figure(env_id, evals, figures / training_png)
    blocks = [
        Heading(2, env_id),
        Paragraph(
            f"Expert return {expert}, random-policy return {random} (normalised scores 1 and 0). "
            "Return ± standard error over all evaluation episodes of all seeds; IQM of the seeds' "
            "normalised scores with a 95% bootstrap interval."
            + (
                " Scored with sticky actions (the env repeats the previous action with "
                "probability 0.25)."
                if rows[0]["sticky_actions"]
                else ""
            )
        ),
        _results_table(rows),
        Image(f"{env_id}: expert-normalised score vs expert episodes", f"{FIGURES}/{score_png}"),
        Image(
            f"{env_id}, N_E = {largest}: real return of the evaluated checkpoints; "
            "held-out latent distance",
            f"{FIGURES}/{training_png}",
        ),
    ]
    if world_model is not None:
        gif = f"{FIGURES}/open_loop_{slug}.gif"
        _copy(world_model / "diagnostics" / "open_loop.gif", root / gif)
        caption = (
            f"{env_id} world model ({_shown(world_model, root)}): real frames (left) beside the "
            "model (right): reconstructions, then open-loop imagination (red border)"
        )
        blocks.append(Image(caption, gif))
    return blocks


def _configuration(config: dict[str, Any] | None, run_configs: list[dict[str, Any]]) -> list[Any]:
    blocks: list[Any] = []
    if config is not None:
        blocks += [
            Paragraph("The experiment's configuration:"),
            Code(json.dumps(config, indent=2, default=str), "json"),
        ]
    versions = next((c["versions"] for c in run_configs if "versions" in c), None)
    if versions is not None:
        blocks += [
            Paragraph("Versions (from a run's config.json):"),
            Code(json.dumps(versions, indent=2), "json"),
        ]
    return [Heading(2, "Configuration"), *blocks] if blocks else []


# ----- published results: results/*.json, and the pages made from them -------------------------
#
# One file per published experiment, in the repository's results/ folder: `ditto report DIR
# --publish NAME` writes it from DIR's evaluated runs (the rows are results.json's, with their
# provenance); the docs hook makes the results page and the methods' tables from these files,
# and `ditto report --readme` the README's table, so no page can drift from the numbers.
SCHEMA = "ditto-results/1"
RESULTS_DIR = "results"
README_BEGIN = "<!-- results-at-a-glance: made by `ditto report --readme` from results/*.json -->"
README_END = "<!-- /results-at-a-glance -->"
ROW_REQUIRED = {"env_id", "algo", "expert_episodes", "seeds", "return_mean"}
FILE_REQUIRED = {"schema", "name", "title", "command", "source", "results"}


def publish(
    root: Path,
    name: str,
    *,
    out: Path = Path(RESULTS_DIR),
    command: str,
    title: str | None = None,
    headline: bool = False,
    notes: list[str] | None = None,
    rows: list[dict[str, Any]] | None = None,
) -> Path:
    """Write out/NAME.json: the rows `write_report` gives for `root` (its results.json; pass
    them as `rows` when it has just run), each seed's score, and the experiment's provenance:
    the command that made the runs, the protocol, the world model's steps, this machine, the
    runs' date and this commit."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        raise DittoError(
            f"--publish {name!r}: use lower-case letters, digits, - and _ (a file name)"
        )
    evals = collect_results(Path(root))
    if not evals:
        raise DittoError(f"{root}: no evaluated runs (eval.json) found")
    rows = summarize(evals) if rows is None else rows
    protocols = {json.dumps(recorded_protocol(e), sort_keys=True) for e in evals}
    if len(protocols) > 1:
        raise DittoError(
            f"{root}: its runs were scored under different protocols {sorted(protocols)}"
        )
    configs = _run_configs(evals)
    steps = sorted(
        {c["world_model_step"] for c in configs if c.get("world_model_step") is not None}
    )
    versions = next((c["versions"] for c in configs if "versions" in c), None)
    scored = max(os.path.getmtime(Path(e["run_dir"]) / EVAL) for e in evals)
    record = {
        "schema": SCHEMA,
        "name": name,
        "title": title or f"{', '.join(sorted({r['env_id'] for r in rows}))} ({name})",
        "headline": headline,
        "command": command,
        "source": f"ditto report {root} --publish {name}: the runs' eval.json and config.json",
        "machine": _machine(),
        "date": datetime.datetime.fromtimestamp(scored, datetime.timezone.utc).date().isoformat(),
        "commit": _commit(),
        "versions": versions,
        "world_model_steps": steps[0] if len(steps) == 1 else (steps or None),
        "protocol": json.loads(protocols.pop()),
        "notes": notes or [],
        "results": rows,
    }
    path = Path(out) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(_json_safe(record), indent=1) + "\n").encode())
    return path


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = [
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line
        ]
        cpu = model[0].split(":", 1)[1].strip() if model else cpu
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()}, Python {platform.python_version()}"


def _commit() -> str | None:
    """The repository's commit when publishing (the runs record versions, not a commit)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def load_published(folder: Path = Path(RESULTS_DIR)) -> list[dict[str, Any]]:
    """Every results/*.json, checked; headline experiments first, then by name."""
    published = []
    for path in sorted(Path(folder).glob("*.json")):
        record = _read_json(path)
        missing = FILE_REQUIRED - set(record) if isinstance(record, dict) else FILE_REQUIRED
        if missing or record.get("schema") != SCHEMA:
            raise DittoError(
                f"{path}: not a published result ({SCHEMA}; missing {sorted(missing)})"
            )
        if record["name"] != path.stem:
            raise DittoError(f"{path}: its name is {record['name']!r}, not its file's")
        for row in record["results"]:
            if ROW_REQUIRED - set(row):
                raise DittoError(f"{path}: a row lacks {sorted(ROW_REQUIRED - set(row))}")
            if "seed_returns" in row and len(row["seed_returns"]) != row["seeds"]:
                raise DittoError(
                    f"{path}: {row['algo']} has {row['seeds']} seeds but not as many scores"
                )
        published.append(record)
    return sorted(published, key=lambda r: (not r.get("headline"), r["name"]))


def _score(row: dict[str, Any]) -> str:
    """Mean return over seeds, with the normalised IQM (or for one seed its score)."""
    iqm = row.get("iqm_normalized_score")
    norm = iqm if iqm is not None else row.get("normalized_score")
    return f"{row['return_mean']:.1f}" + (f" ({norm:.3f})" if norm is not None else "")


def _iqm(row: dict[str, Any]) -> str:
    if row.get("iqm_normalized_score") is None:  # one seed: its score
        norm = row.get("normalized_score")
        return "n/a" if norm is None or row["seeds"] > 1 else f"{norm:.3f}"
    ci = row.get("iqm_ci95")
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and row["seeds"] > 1 else ""
    return f"{row['iqm_normalized_score']:.3f}{interval}"


def _env_label(env_id: str, rows: list[dict[str, Any]]) -> str:
    experts = {round(r["expert_return"], 1) for r in rows if r.get("expert_return") is not None}
    return f"{env_id} (expert {experts.pop():g})" if len(experts) == 1 else env_id


def glance_table(published: list[dict[str, Any]], link: str = "results/{name}.json") -> str:
    """One row per (experiment, env, N_E) of the headline experiments: each method's mean
    return over seeds and normalised IQM, the best in bold; the last column names the file."""
    algos = [a for a in METHODS if any(r["algo"] == a for p in published for r in p["results"])]
    header = ["env", "N_E", "seeds", *(_label(a) for a in algos), "data"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for record in (p for p in published if p.get("headline")):
        cells: dict[tuple[str, int], dict[str, dict[str, Any]]] = defaultdict(dict)
        for row in record["results"]:
            cells[(row["env_id"], row["expert_episodes"])][row["algo"]] = row
        for (env_id, n_e), by_algo in cells.items():
            best = max(r["return_mean"] for r in by_algo.values())
            scores = [
                ""
                if a not in by_algo
                else (
                    f"**{_score(by_algo[a])}**"
                    if by_algo[a]["return_mean"] == best
                    and sum(r["return_mean"] == best for r in by_algo.values()) == 1
                    else _score(by_algo[a])
                )
                for a in algos
            ]
            seeds = sorted({r["seeds"] for r in by_algo.values()})
            target = link.format(name=record["name"])
            lines.append(
                f"| {_env_label(env_id, record['results'])} | {n_e} | "
                f"{'/'.join(map(str, seeds))} | "
                + " | ".join(scores)
                + f" | [`{record['name']}`]({target}) |"
            )
    return "\n".join(lines)


def results_page(published: list[dict[str, Any]]) -> str:
    """The docs site's results page: the table at a glance, then each experiment in full."""
    lines = [
        "# Results",
        "",
        "Made when the site is built from the files in the repository's `results/` folder,",
        "one per published experiment (`ditto report DIR --publish NAME` writes them), so",
        "these numbers are the data's. Each return is the mean over seeds of a run's mean",
        "return over its last snapshots (the protocol says how many, and how many episodes",
        "each); the normalised score is (return - random) / (expert - random), its IQM over",
        "seeds with a 95% bootstrap interval. How each experiment came about, and what was",
        "tried besides, is in the [lab notes](notes/index.md).",
        "",
        "## At a glance",
        "",
        "Mean return over seeds, normalised IQM in brackets (for one seed, its normalised score).",
        "",
        glance_table(published, link="#{name}"),
        "",
    ]
    for record in published:
        lines += [f"## {record['title']} {{ #{record['name']} }}", ""]
        protocol = record.get("protocol") or {}
        facts = [
            ("runs made by", f"`{record['command']}`"),
            ("world-model steps", record.get("world_model_steps")),
            ("protocol", ", ".join(f"{k} {v}" for k, v in protocol.items()) or None),
            ("machine", record.get("machine")),
            ("date", record.get("date")),
            ("commit", f"`{record['commit']}`" if record.get("commit") else None),
            ("recorded in commit", record.get("recorded_in_commit")),
            ("numbers from", record["source"]),
            ("data", f"`results/{record['name']}.json`"),
        ]
        lines += [f"- **{key}**: {value}" for key, value in facts if value not in (None, "")]
        lines.append("")
        for env_id in dict.fromkeys(r["env_id"] for r in record["results"]):
            rows = [r for r in record["results"] if r["env_id"] == env_id]
            extremes = _extremes(rows)
            lines += [f"**{env_id}**{extremes}", "", *_rows_table(rows), ""]
        for note in record.get("notes", []):
            lines += [note, ""]
    return "\n".join(lines)


def _extremes(rows: list[dict[str, Any]]) -> str:
    expert = {r.get("expert_return") for r in rows} - {None}
    random = {r.get("random_return") for r in rows} - {None}
    if len(expert) == 1 and len(random) == 1:
        return f": expert {expert.pop():.1f}, random {random.pop():.1f}"
    return ""


def _rows_table(rows: list[dict[str, Any]], with_env: bool = False) -> list[str]:
    header = [
        "method",
        "N_E",
        "seeds",
        "return per seed",
        "return ± stderr",
        "normalised",
        "IQM [95% CI]",
    ]
    header = ["env", *header] if with_env else header
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        per_seed = ", ".join(f"{x:.1f}" for x in r.get("seed_returns", [])) or "n/a"
        stderr = r.get("return_stderr")
        norm = r.get("normalized_score")
        cells = [
            _label(r["algo"]),
            str(r["expert_episodes"]),
            str(r["seeds"]),
            per_seed,
            f"{r['return_mean']:.1f}" + (f" ± {stderr:.1f}" if stderr is not None else ""),
            "n/a" if norm is None else f"{norm:.3f}",
            _iqm(r),
        ]
        lines.append("| " + " | ".join(([r["env_id"]] if with_env else []) + cells) + " |")
    return lines


def method_table(published: list[dict[str, Any]], algo: str, page: str = "../results.md") -> str:
    """A method's rows in every published experiment, each linked to its section."""
    if algo not in METHODS:
        raise ValueError(f"ditto-results: no method {algo!r}; one of {list(METHODS)}")
    header = ["experiment", "env", "N_E", "seeds", "return ± stderr", "IQM [95% CI]"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for record in published:
        for r in (r for r in record["results"] if r["algo"] == algo):
            stderr = r.get("return_stderr")
            lines.append(
                f"| [{record['name']}]({page}#{record['name']}) | {r['env_id']} | "
                f"{r['expert_episodes']} | {r['seeds']} | {r['return_mean']:.1f}"
                + (f" ± {stderr:.1f}" if stderr is not None else "")
                + f" | {_iqm(r)} |"
            )
    return "\n".join(lines)


def readme_with_table(readme: str, published: list[dict[str, Any]]) -> str:
    """`readme` with the table between its two markers made from `published`."""
    begin, end = readme.find(README_BEGIN), readme.find(README_END)
    if begin < 0 or end < begin:
        raise DittoError(f"the README has no {README_BEGIN!r} ... {README_END!r} markers")
    table = glance_table(published)
    return readme[: begin + len(README_BEGIN)] + "\n" + table + "\n" + readme[end:]
