"""Experts from RL-Baselines3-Zoo run folders.

    expert = load_zoo_expert("rl-trained-agents/ppo/BreakoutNoFrameskip-v4_1", "ALE/Breakout-v5")

A run folder holds the model (FOLDER/<ENV>.zip, else best_model.zip) and FOLDER/<ENV>/ with
config.yml (env_wrapper, frame_stack, normalize) and vecnormalize.pkl, which is used when
config.yml asks for `normalize`. config.yml is parsed by a safe YAML loader that understands
the Zoo's OrderedDict and tuple tags; the model and the statistics load as `sb3:` ones do,
without running code from the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ditto.envs import is_atari
from ditto.errors import ExpertError
from ditto.experts.sb3_checkpoint import load_model, load_vecnormalize, split_algorithm
from ditto.experts.sb3_expert import SB3Expert, build_expert

__all__ = ["load_zoo_config", "load_zoo_expert"]


class _ZooConfigLoader(yaml.SafeLoader):
    """SafeLoader plus the two python tags the Zoo writes: OrderedDict and tuple."""


def _construct_ordered_dict(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.SequenceNode):
        args = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        args = loader.construct_mapping(node, deep=True).get("args", [])
    else:
        args = []
    pairs = args[0] if args else []
    if isinstance(pairs, dict):
        return dict(pairs)
    return {key: value for key, value in pairs}


def _construct_tuple(loader: yaml.SafeLoader, node: yaml.Node) -> tuple:
    return tuple(loader.construct_sequence(node, deep=True))


_ZooConfigLoader.add_constructor(
    "tag:yaml.org,2002:python/object/apply:collections.OrderedDict", _construct_ordered_dict
)
_ZooConfigLoader.add_constructor("tag:yaml.org,2002:python/tuple", _construct_tuple)


def load_zoo_config(path: str | Path) -> dict[str, Any]:
    """A Zoo config.yml (a dict, an [key, value] list or a tagged OrderedDict) as a dict."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_ZooConfigLoader)  # a SafeLoader subclass: no code runs
    except yaml.YAMLError as exc:
        raise ExpertError(f"cannot read Zoo config {path}: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if isinstance(data, list) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in data):
        data = {key: value for key, value in data}
    if not isinstance(data, dict):
        raise ExpertError(f"Zoo config {path} is not a mapping of hyperparameters")
    return data


def _wrapper_list(value: Any) -> list[tuple[str, dict[str, Any]]]:
    """The Zoo's env_wrapper: a name, {name: kwargs}, or a list of either."""
    if value is None or value is False:
        return []
    if isinstance(value, str):
        return [(value, {})]
    if isinstance(value, dict):
        return [(str(name), dict(kwargs or {})) for name, kwargs in value.items()]
    if isinstance(value, (list, tuple)):
        return [item for entry in value for item in _wrapper_list(entry)]
    raise ExpertError(f"cannot read env_wrapper {value!r} in the Zoo config")


def _normalize_wanted(value: Any) -> bool:
    if isinstance(value, str):  # the Zoo also writes "{'norm_obs': True, 'norm_reward': False}"
        return value.strip().lower() not in ("", "false", "0", "none")
    return bool(value)


def _resolve_zoo_folder(folder: str) -> tuple[Path, Path | None]:
    """(model zip, the ENV folder holding config.yml / vecnormalize.pkl, or None)."""
    given = Path(folder).expanduser()
    if given.is_file() and given.suffix == ".zip":
        root, zip_path = given.parent, given
    elif given.is_dir():
        root, zip_path = given, None
    else:
        raise ExpertError(f"Zoo run folder {given} does not exist")
    env_dirs = sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and ((d / "config.yml").is_file() or (d / "vecnormalize.pkl").is_file())
    )
    if zip_path is None:
        names = [f"{d.name}.zip" for d in env_dirs] + ["best_model.zip"]
        found = [root / n for n in names if (root / n).is_file()]
        zips = sorted(root.glob("*.zip"))
        if found:
            zip_path = found[0]
        elif len(zips) == 1:
            zip_path = zips[0]
        elif zips:
            raise ExpertError(
                f"Zoo run folder {root} holds several models ({', '.join(z.name for z in zips)}); "
                "name one: zoo:FOLDER/MODEL.zip"
            )
        else:
            raise ExpertError(f"Zoo run folder {root} holds no model (.zip)")
    stem = zip_path.name[: -len(".zip")]
    matching = [d for d in env_dirs if d.name == stem]
    if matching:
        return zip_path, matching[0]
    if len(env_dirs) == 1:
        return zip_path, env_dirs[0]
    if env_dirs:
        raise ExpertError(
            f"Zoo run folder {root} has several config folders ({', '.join(d.name for d in env_dirs)})"
        )
    return zip_path, None


def load_zoo_expert(
    folder: str, env_id: str, *, trust_pickle: bool = False, seed: int | None = None
) -> SB3Expert:
    """An expert from an RL-Baselines3-Zoo run folder (or `FOLDER/MODEL.zip` inside one).

    Layout: FOLDER/<ENV>.zip (else best_model.zip), FOLDER/<ENV>/config.yml (env_wrapper,
    frame_stack, normalize) and FOLDER/<ENV>/vecnormalize.pkl when normalize is set. The
    Zoo's env id (BreakoutNoFrameskip-v4) need not be ditto's (ALE/Breakout-v5).
    Supported env wrappers: SB3's AtariWrapper and sb3-contrib's TimeFeatureWrapper.
    `trust_pickle` and `seed` as for `load_sb3_expert`.
    """
    algorithm, folder = split_algorithm(folder)
    zip_path, env_dir = _resolve_zoo_folder(folder)
    config: dict[str, Any] = {}
    if env_dir is not None and (env_dir / "config.yml").is_file():
        config = load_zoo_config(env_dir / "config.yml")
    atari_kwargs: dict[str, Any] | None = None
    time_feature_kwargs: dict[str, Any] | None = None
    for name, kwargs in _wrapper_list(config.get("env_wrapper")):
        short = name.rsplit(".", 1)[-1]
        if short == "AtariWrapper":
            atari_kwargs = kwargs
        elif short == "TimeFeatureWrapper":
            time_feature_kwargs = kwargs
        else:
            raise ExpertError(
                f"Zoo expert {zip_path}: env_wrapper {name} is not supported "
                "(supported: AtariWrapper, TimeFeatureWrapper)"
            )
    if atari_kwargs is not None and not is_atari(env_id):
        raise ExpertError(
            f"Zoo expert {zip_path} was trained on Atari (AtariWrapper), but {env_id} is not Atari"
        )
    frame_stack = config.get("frame_stack")
    frame_stack = int(frame_stack) if frame_stack else None

    stats = env_dir / "vecnormalize.pkl" if env_dir is not None else None
    if "normalize" in config:
        wanted = _normalize_wanted(config["normalize"])
    else:
        wanted = stats is not None and stats.is_file()
    normalizer = None
    if wanted:
        if stats is None or not stats.is_file():
            raise ExpertError(
                f"Zoo expert {zip_path} was trained with normalize, but {stats or 'ENV/vecnormalize.pkl'} "
                "is missing"
            )
        normalizer = load_vecnormalize(stats)

    model = load_model(zip_path, algorithm, trust_pickle)
    return build_expert(
        model,
        env_id,
        str(zip_path),
        normalizer=normalizer,
        frame_stack=frame_stack,
        atari_kwargs=atari_kwargs,
        time_feature_kwargs=time_feature_kwargs,
        seed=seed,
    )
