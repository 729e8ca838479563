"""The `ditto` command line.

    ditto collect --env ENV --expert SPEC --episodes N --out DIR [--epsilon E] [--seed S] [--trust-pickle]
    ditto collect --env BabyAI/GoToLocal-v0 --expert babyai-play --episodes N --out DIR [--annotate 0.01]
    ditto dataset info DIR [--json]
    ditto dataset import-minari PATH_OR_ID --out DIR [--env ENV] [--pixels LABEL]
    ditto dataset export-minari DIR --id NAMESPACE/NAME-v0
    ditto dataset verify DIR                every episode file against its recorded sha256
    ditto run verify RUN                    every checkpoint against its recorded sha256
    ditto expert train --env ENV --algo ppo --steps N --out PATH
    ditto expert eval --env ENV --expert SPEC --episodes N [--json] [--trust-pickle]
    ditto train-world-model --data DIR [DIR ...] --out RUN [--preset P] [--steps N] [--set KEY=VALUE ...]
    ditto train --algo {ditto,dbc,dgail,bc} --world-model RUN --expert-data DIR --expert-episodes N --out RUN
                [--preset P] [--steps N] [--set KEY=VALUE ...] [--resume]
    ditto evaluate RUN [RUN ...] [--episodes N] [--json] [--save] [--missions unseen] [--chain K]
    ditto probe WORLD_MODEL [--expert SPEC] [--episodes N] [--json]   what the latent holds
    ditto demo [--env ENV] [--out DIR]      the whole pipeline, with a report
    ditto sweep CONFIG.yaml --out DIR       an experiment grid (finished cells are skipped)
    ditto report DIR                        report.md/.html and results.json from evaluated runs

The training commands' settings are their configs' fields: each field is a flag, with its
type, choices, preset values and comment as help (see "the parser" below).

Errors in the user's input print one line (`error: ...`) and exit with status 2.
Heavy modules are imported inside each command so that `--help` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import fields, replace
from functools import cache
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

EXPERT_HELP = "random | scripted | sb3:PATH.zip | zoo:FOLDER | babyai-play (BabyAI play data)"


def _cmd_collect(args: argparse.Namespace) -> None:
    from ditto.data.collect import collect

    dataset = collect(
        args.env,
        args.expert,
        args.episodes,
        args.out,
        epsilon=args.epsilon,
        seed=args.seed,
        num_envs=args.num_envs,
        grayscale=not args.rgb,
        trust_pickle=args.trust_pickle,
        annotate=args.annotate,
        play_steps=args.play_steps,
    )
    _print_summary(dataset.summary(), as_json=False)


def _cmd_dataset_info(args: argparse.Namespace) -> None:
    from ditto.data import Dataset

    _print_summary(Dataset(args.dir, allow_empty=True).summary(), as_json=args.json)


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary))
        return
    source = ", ".join(f"{k}={v}" for k, v in summary["source"].items()) or "unknown"
    print(
        f"{summary['path']}: {summary['env_id']}, frames {tuple(summary['obs_shape'])} drawn by "
        f"{summary['pixels']}, source {source}"
    )
    print(f"  episodes {summary['episodes']}, steps {summary['steps']}")
    if summary["episodes"]:
        print(
            f"  return mean {summary['return_mean']:.2f} +- {summary['return_std']:.2f} "
            f"(min {summary['return_min']:.2f}, max {summary['return_max']:.2f}), "
            f"mean length {summary['length_mean']:.1f}"
        )
    if "segments" in summary:
        print(
            f"  segments {summary['segments']} (one per mission), completed "
            f"{summary['segments_completed']}, annotated {summary['segments_annotated']}"
        )


def _report_problems(what: Path, problems: list[str], noun: str) -> int:
    """Print one line per problem (exit status 1), or that all is well (0)."""
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"{what}: every {noun} file matches its recorded sha256")
    return 0


def _cmd_dataset_verify(args: argparse.Namespace) -> int:
    from ditto.data import verify_dataset

    return _report_problems(Path(args.dir), verify_dataset(args.dir), "episode")


def _cmd_run_verify(args: argparse.Namespace) -> int:
    from ditto.runs import verify_run

    return _report_problems(Path(args.run), verify_run(args.run), "checkpoint")


def _cmd_import_minari(args: argparse.Namespace) -> None:
    from ditto.data.minari_io import import_minari

    dataset = import_minari(args.source, args.out, env_id=args.env, pixels=args.pixels)
    _print_summary(dataset.summary(), as_json=False)


def _cmd_export_minari(args: argparse.Namespace) -> None:
    from ditto.data.minari_io import export_minari

    path = export_minari(args.dir, args.id, root=args.root)
    print(f"exported {args.dir} to Minari dataset {args.id} at {path}")


def _cmd_expert_train(args: argparse.Namespace) -> None:
    from ditto.experts.train import train_ppo

    path = train_ppo(args.env, args.steps, args.out, seed=args.seed)
    print(f"saved PPO expert to {path}; use it with --expert sb3:{path}")


def _cmd_expert_export(args: argparse.Namespace) -> None:
    from ditto.experts.train import export_expert

    path = export_expert(args.checkpoint, args.out)
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({size:.1f} MiB, policy weights only); use it with --expert sb3:{path}")


def _cmd_expert_eval(args: argparse.Namespace) -> None:
    import numpy as np

    from ditto.data.collect import evaluate_expert

    results = evaluate_expert(
        args.env,
        args.expert,
        args.episodes,
        epsilon=args.epsilon,
        seed=args.seed,
        trust_pickle=args.trust_pickle,
        sticky_actions=args.sticky_actions,
    )
    returns = np.array([r for r, _ in results])
    summary = {
        "env_id": args.env,
        "expert": args.expert,
        "epsilon": args.epsilon,
        "sticky_actions": args.sticky_actions,
        "episodes": len(returns),
        "return_mean": float(returns.mean()),
        "return_stderr": float(returns.std(ddof=1) / np.sqrt(len(returns)))
        if len(returns) > 1
        else 0.0,
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
        "length_mean": float(np.mean([n for _, n in results])),
        "returns": returns.tolist(),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{args.env}{' (sticky actions)' if args.sticky_actions else ''} expert "
            f"{args.expert}: return {summary['return_mean']:.2f} +- "
            f"{summary['return_stderr']:.2f} (stderr) over {len(returns)} episodes, "
            f"min {summary['return_min']:.2f}, max {summary['return_max']:.2f}"
        )


def _training_config(args: argparse.Namespace, section: str) -> Any:
    """The config a training command asks for: the preset, its --set KEY=VALUE pairs and its
    settings' flags (None: not given). A resumed run keeps its own config, so there only
    --steps may change, and without it the run finishes at its own length, not the preset's."""
    from ditto.config import WorldModelConfig, world_model_config
    from ditto.errors import ConfigError
    from ditto.runs import has_checkpoint

    settings: dict[str, Any] = {}
    for pair in args.set:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            settings[key] = json.loads(text)  # 5e-5, 3, true, [1, 2]
        except json.JSONDecodeError:
            settings[key] = text  # a word, e.g. nearest
        if settings[key] is None:
            raise ConfigError(f"--set {pair}: give {key} a value")
    flags = {name: getattr(args, name) for name in args._settings}
    given = {key: value for key, value in flags.items() if value is not None}
    both = sorted(set(settings) & set(given))
    if both:
        raise ConfigError(f"{both[0]} is given both by its flag and by --set; keep one")
    overrides = {**settings, **given}
    if section == "world_model":
        make_config, from_json = world_model_config, WorldModelConfig.from_json
    else:
        from ditto.agents.registry import agent_config, config_from_json

        make_config, from_json = agent_config, config_from_json
    out = Path(args.out)
    saved = _config_to_resume(out, section) if args.resume else None
    if saved is None:
        return make_config(args.preset, **overrides)
    config = make_config(args.preset, **{"steps": saved["steps"], **overrides})
    started = from_json(saved)
    # The method first: another method's settings are not this run's (agent_config drops them).
    for key in sorted(overrides, key=lambda name: name != "algo"):
        was, now = getattr(started, key, None), getattr(config, key, None)
        if key != "steps" and now != was:
            raise ConfigError(
                f"{out} was started with {key}={was!r}, not {now!r}; "
                "--resume continues a run as it was started (only --steps may change), "
                "so drop the setting or use a new --out"
            )
    if has_checkpoint(out):
        return config  # the trainer continues on the run's own config
    _say_restarting(out)
    return replace(started, steps=config.steps)  # afresh, but as it was started


def _config_to_resume(out: Path, section: str) -> dict[str, Any] | None:
    """The config (its `section`) of the run --resume continues in `out`, or None where a kill
    before the run's config.json left its directory empty, so that it starts afresh. A run
    stopped before its first checkpoint resumes from step 0, as its user would restart it;
    a folder with no run in it, or none at all (a mistyped --out), is refused."""
    from ditto.errors import DittoError
    from ditto.io import holds_files
    from ditto.runs import CONFIG, has_checkpoint, read_config

    if has_checkpoint(out) or (out / CONFIG).is_file():
        return read_config(out, section)[section]
    if out.is_dir() and not holds_files(out):
        _say_restarting(out)
        return None
    raise DittoError(f"{out} holds no checkpoint to resume; drop --resume to start a new run")


def _say_restarting(out: Path) -> None:
    print(f"{out} stopped before its first checkpoint; starting it afresh", file=sys.stderr)


def _cmd_train_world_model(args: argparse.Namespace) -> None:
    from ditto.world_model.trainer import train_world_model

    config = _training_config(args, "world_model")
    run = train_world_model(args.data, args.out, config, device=args.device, resume=args.resume)
    print(
        f"world model trained for {run.step} steps: {run.path} (diagnostics in {run.path / 'diagnostics'})"
    )


def _cmd_bench_world_model(args: argparse.Namespace) -> None:
    if args.against is not None:
        _cmd_bench_against(args)
        return
    import torch

    from ditto.device import resolve_device
    from ditto.world_model.bench import bench_world_model

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.preset, args.modes = args.preset or ["debug", "small", "paper"], args.modes or BENCH_MODES
    results = bench_world_model(
        args.preset,
        args.modes,
        resolve_device(args.device),
        steps=args.steps,
        warmup=args.warmup,
        batch=args.batch,
        length=args.length,
    )
    for r in results:
        _print_bench(
            args,
            r,
            f"B{r['batch']}xL{r['length']}: {r['step_s']:.3f} s/step, {r['frames_per_s']:.0f} frames/s, "
            f"{r['gflop_per_step']:.1f} GFLOP/step at {r['tflops_per_s']:.3g} TFLOP/s",
        )


def _cmd_bench_against(args: argparse.Namespace) -> None:
    """`bench world-model --against REV`: today's step and REV's, alternating; one result."""
    from ditto.device import resolve_device
    from ditto.errors import ConfigError
    from ditto.world_model.bench import check_modes
    from ditto.world_model.bench_against import bench_against, describe

    preset, modes = args.preset or ["small"], args.modes or ["fp32"]
    if len(preset) > 1 or len(modes) > 1:
        raise ConfigError(
            "--against times one preset in one mode; pass one --preset and one --modes"
        )
    device = resolve_device(args.device)
    check_modes(modes, device)

    def progress(i: int, today_ms: float, against_ms: float) -> None:
        if not args.json:
            print(
                f"round {i + 1}/{args.rounds}: today {today_ms:.1f} ms/step, "
                f"{args.against} {against_ms:.1f} ms/step",
                file=sys.stderr,
                flush=True,
            )

    result = bench_against(
        args.against,
        preset=preset[0],
        mode=modes[0],
        device=str(device),
        rounds=args.rounds,
        steps=args.steps,
        warmup=args.warmup,
        threads=args.threads or 1,
        batch=args.batch,
        length=args.length,
        on_round=progress,
    )
    print(json.dumps(result) if args.json else describe(result), flush=True)


def _cmd_bench_imagination(args: argparse.Namespace) -> None:
    from ditto.agents.bench import bench_imagination
    from ditto.device import resolve_device

    results = bench_imagination(
        args.preset,
        args.modes,
        resolve_device(args.device),
        batch=args.batch or 512,
        horizon=args.horizon,
        steps=args.steps,
        warmup=args.warmup,
        reward_match=args.reward_match,
        expert_latents=args.expert_latents,
    )
    for r in results:
        _print_bench(
            args,
            r,
            f"B{r['batch']}xH{r['horizon']}, {r['reward_match']} reward over "
            f"{r['expert_latents']} expert latents: {r['update_s']:.3f} s/update, "
            f"{r['gflop_per_update']:.1f} GFLOP/update at {r['tflops_per_s']:.3g} TFLOP/s",
        )


def _print_bench(args: argparse.Namespace, result: dict, measured: str) -> None:
    """One benchmark result as it finishes: a JSON line, or a line for people."""
    if args.json:
        print(json.dumps(result), flush=True)
        return
    speedup = f"x{result['speedup_vs_first_mode']:.2f} vs {args.modes[0]}"
    print(
        f"{result['preset']:>6} {result['mode']:<19} {measured}, {speedup} [{result['device']}]",
        flush=True,
    )


def _cmd_train(args: argparse.Namespace) -> None:
    from ditto.agents.trainer import train_agent

    config = _training_config(args, "agent")
    run = train_agent(
        config, args.expert_data, args.out, args.world_model, device=args.device, resume=args.resume
    )
    print(
        f"{config.algo} trained for {run.step} updates: {run.path}; score it with `ditto evaluate {run.path}`"
    )


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from ditto.errors import DittoError
    from ditto.evaluation.protocol import aggregate, evaluate_run, setting_of

    resolved = [Path(run).resolve() for run in args.runs]
    for run, path in zip(args.runs, resolved, strict=True):
        if resolved.count(path) > 1:
            raise DittoError(f"{run} is given twice; each run counts once in the IQM")
    results = [
        evaluate_run(
            run,
            episodes=args.episodes,
            checkpoints=args.checkpoints,
            greedy=True if args.greedy else None,
            num_envs=args.num_envs,
            sticky_actions=args.sticky_actions,
            device=args.device,
            missions=args.missions,
            chain=args.chain,
        )
        for run in args.runs
    ]
    if args.save:
        from ditto.io import atomic_write_json
        from ditto.runs import EVAL

        for r in results:
            atomic_write_json(Path(r["run"]) / EVAL, r)
    # An IQM across runs means something for seeds of one setting, not across envs or methods.
    settings = {setting_of(r) for r in results}
    if len(results) == 1:
        summary = results[0]
    elif len(settings) == 1:
        summary = {**aggregate(results), "per_run": results}
    else:
        summary = {"per_run": results}
    if args.json:
        print(json.dumps(summary))
        return
    for r in results:
        if "success_rate" in r:
            _print_missions(r)
            continue
        print(
            f"{r['run']}: {r['algo']} on {r['env_id']} (N_E={r['expert_episodes']}, seed {r['seed']}): "
            f"return {r['return_mean']:.2f} +- {r['return_stderr']:.2f} over {r['episodes']} episodes "
            f"({len(r['checkpoints'])} checkpoints), normalised {r['normalized_score']:.3f} "
            f"(expert {r['expert_return']:.2f}, random {r['random_return']:.2f})"
        )
    if len(settings) > 1:
        print("no IQM across these runs: they differ in env, method or N_E, not only in seed")
    elif len(results) > 1:
        lo, hi = summary["iqm_ci95"]
        print(
            f"IQM normalised score over {len(results)} runs: {summary['iqm_normalized_score']:.3f} [{lo:.3f}, {hi:.3f}]"
        )


def _print_missions(r: dict) -> None:
    """A goal-conditioned run's score: success overall, per mission type, seen and unseen, and
    the chains' average length."""

    def rate(part: dict) -> str:
        value = part["success_rate"]
        return f"{'-' if value is None else f'{value:.2f}'} ({part['missions']})"

    protocol = r["protocol"]
    print(
        f"{r['run']}: {r['algo']} on {r['env_id']} (N_E={r['expert_episodes']}, seed {r['seed']}), "
        f"{protocol['missions']} missions: success {rate(r)} over {r['episodes']} episodes "
        f"({len(r['checkpoints'])} checkpoints; random {r['random_success_rate']:.2f}), "
        f"normalised {r['normalized_score']:.3f}, return {r['return_mean']:.2f}"
    )
    parts = [f"{kind} {rate(part)}" for kind, part in r["by_type"].items()]
    parts += [f"{name} {rate(r[name])}" for name in ("seen", "unseen") if name in r]
    print("  success (missions) by type: " + ", ".join(parts))
    if protocol["chain"] > 1:
        chain = r["chain"]
        reached = " ".join(f"{share:.2f}" for share in chain["reached"])
        print(
            f"  chains of {chain['length']}: {chain['completed_mean']:.2f} done on average "
            f"(random {r['random_chain']['completed_mean']:.2f}); reaching 1..{chain['length']}: "
            f"{reached}"
        )
    if r["unknown_words"]:
        print(f"  words no annotation had (read as <unk>): {', '.join(r['unknown_words'])}")


# --- the parser -------------------------------------------------------------------------------
# The training commands' flags are generated from the config dataclasses, a flag per field
# (`_add_setting`), by a loop over their fields rather than by tyro: tyro would be a new
# dependency, would parse (and word the errors and exit codes) its own way where the tests hold
# argparse's, and needs the config classes when the parser is built, which for the methods'
# configs (they live beside their torch code) means importing torch for every `--help`. Here
# those commands' flags are added when one of them is parsed or its help shown (`_Parser`).

# Flags that kept the names they had before the CLI was generated from the configs.
FLAG_NAMES = {"bc_frame_stack": "--frame-stack", "bc_augment": "--augment"}
METAVARS = {int: "INT", float: "FLOAT", str: "TEXT"}
SETTINGS_NOTE = (
    "each the preset's value unless given (a resumed run keeps its own: only --steps may "
    "change); --set KEY=VALUE sets them too"
)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that may add its arguments when they are first needed (`fill`: to
    parse, or to show help), so that building `ditto`'s parser imports no torch. Every `ditto`
    run builds its parser anew: a method or reward registered before then (a plug-in, a test)
    has its flags and is a choice."""

    def __init__(self, *args: Any, fill: Callable[[Any], None] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._fill = fill

    def complete(self) -> _Parser:
        """Add the deferred arguments now (once)."""
        fill, self._fill = self._fill, None
        if fill is not None:
            fill(self)
        return self

    def parse_known_args(self, args=None, namespace=None):
        self.complete()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self.complete()
        return super().format_usage()

    def format_help(self) -> str:
        self.complete()
        return super().format_help()


def build_parser(*, deferred: bool = False) -> argparse.ArgumentParser:
    """The `ditto` parser. deferred=True (what `main` runs): the training commands' flags are
    added only when one of those commands is parsed or its help shown, so that `ditto --help`
    and the other commands import no torch; the help is the same either way."""
    parser = _Parser(
        prog="ditto",
        description="Offline imitation learning from pixels with world models (DITTO).",
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_collect,
        _add_dataset,
        _add_expert,
        _add_run,
        _add_train_world_model,
        _add_train,
        _add_evaluate,
        _add_probe,
        _add_demo,
        _add_sweep,
        _add_report,
        _add_bench,
    ):
        add(commands)
    if not deferred:
        _complete(parser)
    return parser


def _complete(parser: argparse.ArgumentParser) -> None:
    """Add every deferred argument of `parser` and of the commands below it."""
    if isinstance(parser, _Parser):
        parser.complete()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _complete(sub)


# --- the training commands: their settings are their config's fields ---------------------------


def _add_train_world_model(commands) -> None:
    commands.add_parser(
        "train-world-model",
        help="train a reward-free world model on datasets",
        fill=_train_world_model_flags,
    )


def _train_world_model_flags(p: argparse.ArgumentParser) -> None:
    from ditto.config import WORLD_MODEL_PRESETS, WorldModelConfig

    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="DIR",
        help="datasets (expert and other episodes)",
    )
    p.add_argument("--out", required=True, metavar="RUN", help="run directory")
    _add_preset(p, WORLD_MODEL_PRESETS, "model size")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    _add_switch(p, "--resume")
    _add_set_flag(p, "lr=1e-3 deter=512")
    group = p.add_argument_group("world-model settings", SETTINGS_NOTE)
    for field in fields(WorldModelConfig):
        _add_setting(group, WorldModelConfig, field.name, WORLD_MODEL_PRESETS)
    names = [field.name for field in fields(WorldModelConfig)]
    p.set_defaults(func=_cmd_train_world_model, _settings=names)


def _add_train(commands) -> None:
    commands.add_parser(
        "train", help="train an imitation agent (DITTO, D-BC, D-GAIL, pixel BC)", fill=_train_flags
    )


def _train_flags(p: argparse.ArgumentParser) -> None:
    from ditto.agents.registry import METHODS, method_settings
    from ditto.config import AgentConfig

    p.add_argument(
        "--algo", required=True, choices=METHODS, metavar="ALGO", help="the method: %(choices)s"
    )
    frames_alone = ", ".join(m.name for m in METHODS.values() if not m.world_model)
    unneeded = f" (not needed by {frames_alone})" if frames_alone else ""
    p.add_argument("--world-model", default=None, metavar="RUN", help=f"world-model run{unneeded}")
    p.add_argument("--expert-data", required=True, metavar="DIR", help="expert dataset")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory")
    _add_preset(p, AgentConfig.PRESETS, "network sizes and schedule")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    _add_switch(p, "--resume")
    _add_set_flag(p, "entropy=0.01 layers=3 units=128")
    owners = {name: config for name, config in method_settings().items() if name != "algo"}
    _add_method_settings(p, METHODS, owners)
    p.set_defaults(func=_cmd_train, _settings=["algo", *owners])


def _add_method_settings(p: argparse.ArgumentParser, methods: dict, owners: dict) -> None:
    """A flag for each setting of the registered methods (`owners`: setting -> the config of
    the first method that has it), in groups by the config class that declares it, each
    titled with the methods it acts on. A setting of another method than --algo's is ignored."""
    groups: dict[type, Any] = {}
    presets = {config: config.presets() for config in set(owners.values())}
    for name, config in owners.items():
        declared = next(
            k for k in reversed(config.__mro__) if name in vars(k).get("__annotations__", {})
        )
        if declared not in groups:
            users = [m.name for m in methods.values() if issubclass(m.config, declared)]
            every = len(users) == len(methods)
            title = "settings of every method" if every else f"settings of {', '.join(users)}"
            groups[declared] = p.add_argument_group(title, SETTINGS_NOTE if every else None)
        required = name == "expert_episodes"  # the one a run cannot do without
        _add_setting(groups[declared], config, name, presets[config], required)


def _add_setting(
    group: Any, config: type, name: str, presets: dict[str, Any], required: bool = False
) -> None:
    """The flag of setting `name` of `config`: --name (or FLAG_NAMES's), typed and with the
    choices of the field, None (the preset's value) unless given; its help is the field's
    comment (config.field_docs) and its value in each preset."""
    from ditto.config import field_docs

    hint = _type_hints(config)[name]
    kwargs: dict[str, Any] = {"dest": name, "default": None}
    if hint is bool:
        kwargs["action"] = argparse.BooleanOptionalAction  # --compile / --no-compile
    elif get_origin(hint) is tuple:
        item = get_args(hint)[0]
        kwargs.update(nargs="+", type=item, metavar=METAVARS[item])
    elif name in config.choices():
        kwargs["choices"] = config.choices()[name]
    else:
        kwargs.update(type=hint, metavar=METAVARS[hint])
    doc = field_docs(config)[name]
    if required:
        kwargs["required"] = True
    else:
        doc += f" ({_preset_values({p: getattr(c, name) for p, c in presets.items()})})"
    flag = FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
    group.add_argument(flag, help=doc.replace("%", "%%"), **kwargs)


@cache
def _type_hints(config: type) -> dict[str, Any]:
    return get_type_hints(config)


def _preset_values(values: dict[str, Any]) -> str:
    """'default 15', or where the presets differ, 'default: debug 4, small 15, paper 15'."""
    shown = {preset: _shown(value) for preset, value in values.items()}
    if len(set(shown.values())) == 1:
        return f"default {next(iter(shown.values()))}"
    return "default: " + ", ".join(f"{preset} {value}" for preset, value in shown.items())


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value)) or "none"
    return str(value)


def _add_preset(p: argparse.ArgumentParser, presets: dict, what: str) -> None:
    p.add_argument(
        "--preset", default="small", choices=list(presets), help=f"{what} (default small)"
    )


# Switches that several commands take: flag -> help.
SWITCHES = {
    "--resume": "continue the run in RUN from its checkpoint (a run stopped before its first "
    "checkpoint starts afresh, with its own settings)",
    "--trust-pickle": "let stable-baselines3 load an sb3:/zoo: checkpoint that ditto cannot "
    "read safely; this runs any code pickled in the file: only for checkpoints you trust",
    "--sticky-actions": "Atari: repeat the previous action with probability 0.25 (MinAtar: "
    "0.1), so that replaying a memorised game cannot score (the data are recorded without)",
}


def _add_switch(p: argparse.ArgumentParser, flag: str) -> None:
    p.add_argument(flag, action="store_true", help=SWITCHES[flag])


def _add_set_flag(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help=f"settings by the names a run's config.json gives them, e.g. {example}; "
        "values are read as JSON where they parse, else as text",
    )


# --- the other commands ------------------------------------------------------------------------


def _add_collect(commands) -> None:
    p = commands.add_parser("collect", help="record episodes of an expert into a dataset directory")
    p.add_argument("--env", required=True, help="env id, e.g. CartPole-v1 or ALE/Pong-v5")
    p.add_argument("--expert", required=True, help=f"expert spec: {EXPERT_HELP}")
    p.add_argument("--episodes", type=int, required=True, help="number of episodes in the dataset")
    p.add_argument(
        "--out", required=True, help="dataset directory (resumes if it holds the same collection)"
    )
    p.add_argument(
        "--epsilon", type=float, default=0.0, help="probability of a random action (default 0)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="episode i starts from env seed SEED+i (default 0)"
    )
    p.add_argument(
        "--num-envs", type=int, default=8, help="vectorised envs for frame-only experts (default 8)"
    )
    p.add_argument("--rgb", action="store_true", help="record RGB frames instead of grayscale")
    _add_switch(p, "--trust-pickle")
    p.add_argument(
        "--annotate",
        type=float,
        default=None,
        metavar="FRACTION",
        help="babyai-play: fraction of the completed missions whose text is kept (default 0.01); "
        "the others keep their bounds only",
    )
    p.add_argument(
        "--play-steps",
        type=int,
        default=None,
        metavar="N",
        help="babyai-play: steps in one play episode (default 512)",
    )
    p.set_defaults(func=_cmd_collect)


def _add_dataset(commands) -> None:
    dataset = commands.add_parser("dataset", help="inspect, import and export datasets")
    sub = dataset.add_subparsers(dest="dataset_command", required=True, metavar="COMMAND")
    p = sub.add_parser("info", help="episodes, steps, returns, env and source of a dataset")
    p.add_argument("dir", help="dataset directory")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_dataset_info)
    p = sub.add_parser(
        "verify",
        help="check every episode file against the sha256 metadata.json records; one line per "
        "file that changed or is missing (exit status 1), exit status 0 when all match",
    )
    p.add_argument("dir", help="dataset directory")
    p.set_defaults(func=_cmd_dataset_verify)
    p = sub.add_parser("import-minari", help="import a local Minari dataset (never downloads)")
    p.add_argument("source", metavar="PATH_OR_ID", help="Minari dataset id or its folder")
    p.add_argument("--out", required=True, help="new ditto dataset directory")
    p.add_argument("--env", default=None, help="env id, if the Minari dataset does not name one")
    p.add_argument(
        "--pixels",
        default=None,
        metavar="LABEL",
        help="assert who drew the frames, e.g. ditto-cartpole-1 (what `ditto dataset info` shows "
        "for data ditto collected), so that the import mixes with data drawn so; only if you know "
        "the frames match. Default: a ditto export's own label, else minari:<dataset id>",
    )
    p.set_defaults(func=_cmd_import_minari)
    p = sub.add_parser("export-minari", help="export to a local Minari dataset (lossless frames)")
    p.add_argument("dir", help="ditto dataset directory")
    p.add_argument("--id", required=True, help="Minari dataset id NAMESPACE/NAME-v0")
    p.add_argument("--root", default=None, help="Minari datasets folder (default: Minari's own)")
    p.set_defaults(func=_cmd_export_minari)


def _add_expert(commands) -> None:
    expert = commands.add_parser("expert", help="train and evaluate experts")
    sub = expert.add_subparsers(dest="expert_command", required=True, metavar="COMMAND")
    p = sub.add_parser("train", help="train a PPO expert with stable-baselines3 (resumable)")
    p.add_argument("--env", required=True)
    p.add_argument("--algo", default="ppo", choices=["ppo"])
    p.add_argument("--steps", type=int, required=True, help="total environment steps")
    p.add_argument("--out", required=True, help="path of the saved model (.zip)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_expert_train)
    p = sub.add_parser("eval", help="mean return of an expert over N episodes")
    p.add_argument("--env", required=True)
    p.add_argument("--expert", required=True, help=f"expert spec: {EXPERT_HELP}")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--epsilon", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_switch(p, "--sticky-actions")
    _add_switch(p, "--trust-pickle")
    p.set_defaults(func=_cmd_expert_eval)
    p = sub.add_parser(
        "export",
        help="copy an SB3 checkpoint's policy weights (no optimizer state) to ship as an expert",
    )
    p.add_argument("checkpoint", help="SB3 checkpoint (.zip), e.g. from ditto expert train")
    p.add_argument("--out", required=True, help="path of the exported expert (.zip)")
    p.set_defaults(func=_cmd_expert_export)


def _add_run(commands) -> None:
    run = commands.add_parser("run", help="check training runs")
    sub = run.add_subparsers(dest="run_command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "verify",
        help="check a run's checkpoints against the sha256 its config.json records; one line per "
        "file that changed or is missing (exit status 1), exit status 0 when all match",
    )
    p.add_argument("run", metavar="RUN", help="world-model or agent run directory")
    p.set_defaults(func=_cmd_run_verify)


def _add_evaluate(commands) -> None:
    p = commands.add_parser(
        "evaluate", help="score runs in the real env under the paper's protocol"
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="agent runs (several: IQM across them)")
    p.add_argument(
        "--episodes", type=int, default=None, help="episodes per checkpoint (default 20)"
    )
    p.add_argument(
        "--checkpoints", type=int, default=None, help="last checkpoints to score (default 10)"
    )
    p.add_argument(
        "--greedy", action="store_true", help="take the policy's mode instead of sampling"
    )
    p.add_argument(
        "--num-envs",
        type=int,
        default=None,
        help="vectorised envs (default: the run's, 8); the count decides which episodes are "
        "played, so compare scores made with the same count",
    )
    _add_switch(p, "--sticky-actions")
    p.add_argument(
        "--missions",
        choices=("all", "unseen"),
        default="all",
        help="goal-conditioned runs (lumos): every episode toward its env's mission, or only "
        "episodes whose mission no training annotation has (default all; success is "
        "reported on seen and unseen missions either way)",
    )
    p.add_argument(
        "--chain",
        type=int,
        default=1,
        metavar="K",
        help="goal-conditioned runs: up to K missions in a row in one room, the next given "
        "once one is done; reports the average number done (default 1)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--save",
        action="store_true",
        help="also write the score to RUN/eval.json (for `ditto report`)",
    )
    p.set_defaults(func=_cmd_evaluate)


def _add_probe(commands) -> None:
    p = commands.add_parser(
        "probe",
        help="held-out R^2 of the game state (objects, RAM, state vector) from a world "
        "model's latent and from the frame",
    )
    p.add_argument("world_model", metavar="WORLD_MODEL", help="a world-model run")
    p.add_argument(
        "--expert", default="scripted", help=f"{EXPERT_HELP} that plays the probe's episodes"
    )
    p.add_argument("--episodes", type=_at_least(2), default=20, help="episodes (default 20)")
    p.add_argument(
        "--epsilon", type=float, default=0.1, help="random actions mixed in (default 0.1)"
    )
    p.add_argument("--seed", type=int, default=500_000, help="first episode's env seed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--save", action="store_true", help="also write WORLD_MODEL/probe.json")
    p.set_defaults(func=_cmd_probe)


def _add_demo(commands) -> None:
    p = commands.add_parser("demo", help="the whole pipeline on one env, ending in a report")
    p.add_argument(
        "--env", default="CartPole-v1", help="an env with a demo plan (default CartPole-v1)"
    )
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--expert", default=None, help=f"{EXPERT_HELP} (default: the plan's, scripted)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--jobs", type=int, default=None, help="agent runs in parallel (default: CPU cores, max 4)"
    )
    p.set_defaults(func=_cmd_demo)


def _add_sweep(commands) -> None:
    p = commands.add_parser("sweep", help="run an experiment grid from a YAML file")
    p.add_argument("config", help="grid YAML, e.g. configs/small.yaml")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--jobs", type=int, default=None, help="agent runs in parallel (default: CPU cores, max 4)"
    )
    p.add_argument("--no-report", action="store_true", help="skip writing the report at the end")
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run the stages as Ray tasks: on a local Ray instance, or on the cluster at ADDRESS "
        "(auto, HOST:6379, ray://HOST:10001); the grid directory must be on storage every node "
        "sees; needs pip install ditto-il[ray] (see the scaling docs)",
    )
    p.set_defaults(func=_cmd_sweep)


def _add_report(commands) -> None:
    p = commands.add_parser(
        "report", help="aggregate evaluated runs into report.md/.html and results.json"
    )
    p.add_argument("dir", nargs="?", help="a directory holding evaluated agent runs (eval.json)")
    publish = p.add_argument_group(
        "publishing (results/*.json, from which the results pages and README table are made)"
    )
    publish.add_argument(
        "--publish",
        metavar="NAME",
        help="also write RESULTS/NAME.json: DIR's results with the command, protocol, "
        "world-model steps, machine, date and commit",
    )
    publish.add_argument(
        "--command", help="with --publish: the command that made DIR's runs (required)"
    )
    publish.add_argument("--title", help="with --publish: the experiment's heading")
    publish.add_argument(
        "--headline", action="store_true", help="with --publish: list it in the tables at a glance"
    )
    publish.add_argument(
        "--note", action="append", default=[], help="with --publish: a paragraph (repeatable)"
    )
    publish.add_argument(
        "--results", default="results", metavar="RESULTS", help="the published results' folder"
    )
    publish.add_argument(
        "--readme",
        nargs="?",
        const="README.md",
        metavar="PATH",
        help="rewrite the results table in PATH (README.md) from RESULTS/*.json, no DIR needed",
    )
    publish.add_argument(
        "--check",
        action="store_true",
        help="with --readme: change nothing; exit 1 if the table differs from the data",
    )
    p.set_defaults(func=_cmd_report)


# The speed benchmarks' modes (ditto.world_model.bench.MODES); CUDA graphs, for GPUs, are not
# a default.
BENCH_MODES, GRAPHS = ["fp32", "bf16", "fp32+compile", "bf16+compile"], "bf16+compile+graphs"


def _add_bench(commands) -> None:
    bench = commands.add_parser("bench", help="speed benchmarks")
    sub = bench.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")
    p = sub.add_parser("world-model", help="world-model training steps/s: fp32 vs bf16 vs compile")
    _add_bench_flags(p)
    p.add_argument(
        "--length", type=_at_least(1), default=None, help="override the preset's sequence length"
    )
    p.add_argument(
        "--against",
        metavar="REV",
        default=None,
        help="time this checkout's step against commit REV's, alternating in one run "
        "(one preset, default small; one mode, default fp32); prints the speedup",
    )
    p.add_argument(
        "--rounds",
        type=_at_least(1),
        default=5,
        help="with --against: alternating rounds of --steps steps per side (default 5)",
    )
    p.add_argument(
        "--threads",
        type=_at_least(1),
        default=None,
        help="torch threads (per side with --against, default 1; else torch's default)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    # None: all presets and modes, or with --against the small preset in fp32
    p.set_defaults(func=_cmd_bench_world_model, preset=None, modes=None)
    p = sub.add_parser(
        "imagination",
        help="DITTO updates/s (rollout + losses + optimiser): fp32 vs bf16 vs compile",
    )
    _add_bench_flags(p)
    p.add_argument(
        "--horizon", type=_at_least(1), default=15, help="imagination horizon (default 15)"
    )
    p.add_argument(
        "--reward-match",
        choices=["time", "nearest"],
        default="time",
        help="DITTO's reward target (default time); nearest searches all expert latents",
    )
    p.add_argument(
        "--expert-latents",
        type=_at_least(1),
        default=1600,
        help="synthetic expert latents (N_E x episode length; default 1600)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_cmd_bench_imagination)


def _add_bench_flags(p: argparse.ArgumentParser) -> None:
    """The flags both speed benchmarks take."""
    presets = ["debug", "small", "paper"]
    p.add_argument("--preset", nargs="+", default=presets, choices=presets)
    p.add_argument("--modes", nargs="+", default=BENCH_MODES, choices=[*BENCH_MODES, GRAPHS])
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--steps", type=_at_least(1), default=5, help="timed steps per mode (median reported)"
    )
    p.add_argument(
        "--warmup",
        type=_at_least(0),
        default=2,
        help="untimed steps first (compilation happens here)",
    )
    p.add_argument(
        "--batch",
        type=_at_least(1),
        default=None,
        help="override the batch (imagination: default 512)",
    )


def _cmd_demo(args: argparse.Namespace) -> None:
    from ditto.experiments.demo import run_demo

    report = run_demo(args.env, args.out, expert=args.expert, device=args.device, jobs=args.jobs)
    print(f"report: {report['report']} and {report['html']}")


def _cmd_sweep(args: argparse.Namespace) -> None:
    from ditto.experiments.grid import load_grid, run_grid

    grid = load_grid(args.config)
    if args.ray is None:
        results = run_grid(grid, args.out, device=args.device, jobs=args.jobs)
    else:
        from ditto.errors import ConfigError
        from ditto.experiments.ray_backend import run_grid_on_ray

        if args.jobs is not None:
            raise ConfigError(
                "--jobs is the local pool's; with --ray, the grid's resources: section sizes the tasks"
            )
        results = run_grid_on_ray(grid, args.out, address=args.ray, device=args.device)
    print(f"{len(results)} runs scored under {args.out}")
    if not args.no_report:
        _cmd_report(argparse.Namespace(dir=args.out))


def _cmd_report(args: argparse.Namespace) -> int | None:
    from ditto.errors import DittoError
    from ditto.experiments.report import publish, write_report

    if getattr(args, "readme", None):
        return _readme_table(args)
    if not args.dir:
        raise DittoError("give DIR, the folder of evaluated runs (or --readme)")
    if getattr(args, "check", False):
        raise DittoError("--check goes with --readme")
    if getattr(args, "publish", None) and not args.command:
        raise DittoError("--publish needs --command, the command that made the runs")
    report = write_report(Path(args.dir))
    for row in report["results"]:
        print(
            f"{row['env_id']} {row['algo']:>5} N_E={row['expert_episodes']:<4} seeds={row['seeds']}: "
            f"return {row['return_mean']:.1f} +- {row['return_stderr']:.1f}, "
            f"normalised {row['normalized_score']:.3f}"
        )
    print(f"report: {report['report']} and {report['html']}")
    if getattr(args, "publish", None):
        path = publish(
            Path(args.dir),
            args.publish,
            out=Path(args.results),
            command=args.command,
            title=args.title,
            headline=args.headline,
            notes=args.note,
            rows=report["results"],
        )
        print(f"published: {path}")
    return None


def _readme_table(args: argparse.Namespace) -> int:
    """`ditto report --readme [PATH] [--check]`: the README's results table from results/."""
    from ditto.errors import DittoError
    from ditto.experiments.report import load_published, readme_with_table
    from ditto.io import atomic_write_bytes

    if args.dir or args.publish:
        raise DittoError("--readme takes no DIR and no --publish; run them one after the other")
    readme = Path(args.readme)
    if not readme.is_file():
        raise DittoError(f"{readme}: no such file")
    before = readme.read_text()
    after = readme_with_table(before, load_published(Path(args.results)))
    if args.check:
        state = "matches" if after == before else "differs from"
        print(f"{readme}: its results table {state} {args.results}/*.json")
        return 0 if after == before else 1
    if after != before:
        atomic_write_bytes(readme, after.encode())
    print(f"{readme}: results table {'rewritten' if after != before else 'unchanged'}")
    return 0


def _cmd_probe(args: argparse.Namespace) -> None:
    from ditto.evaluation.probe import format_probe, latent_probe

    report = latent_probe(
        args.world_model,
        args.expert,
        episodes=args.episodes,
        epsilon=args.epsilon,
        seed=args.seed,
        device=args.device,
    )
    if args.save:
        from ditto.io import atomic_write_json

        atomic_write_json(Path(args.world_model) / "probe.json", report)
    print(json.dumps(report) if args.json else format_probe(report))


def _version() -> str:
    from ditto import __version__

    return f"ditto {__version__}"


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= minimum."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    args = build_parser(deferred=True).parse_args(argv)
    from ditto.errors import DittoError

    try:
        code = args.func(args)  # None, or a command's own status (verify: 1 for a mismatch)
    except (DittoError, OSError) as exc:  # OSError: a full disk, no permission, ...
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is saved", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
