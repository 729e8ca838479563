"""stable-baselines3 checkpoints loaded as experts, without running code stored in them.

    expert = load_sb3_expert("experts/walker.zip", "BipedalWalker-v3")
    expert = load_sb3_expert("PPO:experts/walker.zip", "BipedalWalker-v3")  # algorithm named

Nothing in a checkpoint runs code (experts are files people download):

- the zip's `data` JSON is parsed here; its pickled (`:serialized:`) entries become inert
  records (`ditto.experts.records`), and the policy class, the observation and action spaces
  and the policy's arguments are rebuilt from those and from the plain fields; the model is
  built without SB3's loader, and its weights come from `policy.pth` through
  `torch.load(weights_only=True)`. What cannot be rebuilt that way is refused, naming the
  entry; `trust_pickle=True` (`--trust-pickle`) then lets SB3's own loader unpickle it,
  running any code in it. Entries that only training uses (schedules, buffer classes) are
  not read at all;
- VecNormalize statistics give only their observation mean, variance and clipping, read by
  the same record unpickler. `sb3:PATH.zip` uses `PATH.vecnormalize.pkl` (PATH without
  `.zip`) when it exists; `train_ppo` writes that file next to the model it saves.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ditto.errors import ExpertError
from ditto.experts.records import RecordUnpickler, describe, record_global
from ditto.experts.sb3_expert import ObsNormalizer, SB3Expert, build_expert

__all__ = [
    "ALGORITHMS",
    "CONTRIB_ALGORITHMS",
    "load_model",
    "load_sb3_expert",
    "load_vecnormalize",
    "read_stats_pickle",
    "read_zip_data",
    "split_algorithm",
    "vecnormalize_path",
]

# Algorithms that load with stable-baselines3 alone; sb3-contrib ones load when it is installed.
ALGORITHMS = ("PPO", "A2C", "DQN", "SAC", "TD3", "DDPG")
CONTRIB_ALGORITHMS = ("QRDQN", "TQC", "TRPO", "ARS")

# What load() must not deserialise for prediction (schedules pickled with another Python
# often fail to load); the Zoo's own enjoy.py replaces the same entries.
_PREDICT_ONLY_OBJECTS = {
    "learning_rate": 0.0,
    "lr_schedule": lambda _: 0.0,
    "clip_range": lambda _: 0.0,
    "exploration_schedule": lambda _: 0.0,
}


def vecnormalize_path(model_path: str | Path) -> Path:
    """Where the VecNormalize statistics of `model_path` live: `walker.zip` -> `walker.vecnormalize.pkl`."""
    path = Path(model_path)
    stem = path.name[: -len(".zip")] if path.name.endswith(".zip") else path.name
    return path.with_name(f"{stem}.vecnormalize.pkl")


def read_stats_pickle(path: Path) -> Any:
    """What VecNormalize.save(path) pickled, read as records: nothing in it runs."""
    try:
        with open(path, "rb") as f:
            return RecordUnpickler(f).load()
    except Exception as exc:  # a bad pickle fails in many ways, none of which ran its code
        raise ExpertError(
            f"cannot read VecNormalize statistics {path}: {_first_line(exc)}"
        ) from None


def load_vecnormalize(path: str | Path) -> ObsNormalizer | None:
    """The observation normalisation saved by VecNormalize.save(path); None if it had norm_obs=False."""
    path = Path(path)
    if not path.is_file():
        raise ExpertError(f"VecNormalize statistics {path} do not exist")
    saved = read_stats_pickle(path)
    if not getattr(saved, "norm_obs", True):
        return None
    obs_rms = getattr(saved, "obs_rms", None)
    if isinstance(obs_rms, dict):
        raise ExpertError(f"{path}: VecNormalize of dict observations is not supported")
    mean, var = getattr(obs_rms, "mean", None), getattr(obs_rms, "var", None)
    clip_obs, epsilon = getattr(saved, "clip_obs", 10.0), getattr(saved, "epsilon", 1e-8)
    if (
        not (_numeric_array(mean) and _numeric_array(var))
        or mean.shape != var.shape
        or not (_is_number(clip_obs) and _is_number(epsilon))
    ):
        raise ExpertError(f"{path} is not a VecNormalize save (no observation mean/var found)")
    return ObsNormalizer(
        mean=mean.astype(np.float64),
        var=var.astype(np.float64),
        clip_obs=float(clip_obs),
        epsilon=float(epsilon),
    )


def _numeric_array(value: Any) -> bool:
    # a real array of numbers (never of objects: those could be records)
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def read_zip_data(path: Path) -> dict[str, Any]:
    """The JSON `data` entry of an SB3 zip (hyperparameters, spaces, num_timesteps)."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise ExpertError(
            f"{path} is not a stable-baselines3 checkpoint (a .zip with a 'data' entry)"
        )
    return data


def _guess_algorithm(data: dict[str, Any]) -> str | None:
    policy_class = data.get("policy_class")
    module = str(policy_class.get("__module__", "")) if isinstance(policy_class, dict) else ""
    if "recurrent" in module:
        raise ExpertError("recurrent (LSTM) SB3 policies are not supported as experts")
    for part, algo in (
        (".dqn.", "DQN"),
        (".sac.", "SAC"),
        (".td3.", "TD3"),
        (".qrdqn.", "QRDQN"),
        (".tqc.", "TQC"),
        (".trpo.", "TRPO"),
        (".ars.", "ARS"),
        (".ppo.", "PPO"),
        (".a2c.", "A2C"),
    ):
        if part in module + ".":
            return algo
    if "policies" in module and "n_steps" in data:  # ActorCriticPolicy: PPO or A2C
        return "PPO" if "clip_range" in data else "A2C"
    return None


def _algorithm_class(name: str):
    import stable_baselines3

    upper = name.upper()
    if upper in ALGORITHMS:
        return getattr(stable_baselines3, upper)
    if upper in CONTRIB_ALGORITHMS:
        try:
            import sb3_contrib
        except ImportError:
            raise ExpertError(
                f"{upper} checkpoints need sb3-contrib: pip install sb3-contrib"
            ) from None
        return getattr(sb3_contrib, upper)
    raise ExpertError(
        f"unknown algorithm {name!r}; expected one of {', '.join(ALGORITHMS + CONTRIB_ALGORITHMS)}"
    )


def split_algorithm(spec: str) -> tuple[str | None, str]:
    """'PPO:path.zip' -> ('PPO', 'path.zip'); 'path.zip' -> (None, 'path.zip')."""
    head, sep, rest = spec.partition(":")
    if sep and head.upper() in ALGORITHMS + CONTRIB_ALGORITHMS:
        return head.upper(), rest
    return None, spec


def _resolve_zip(path_str: str) -> Path:
    path = Path(path_str).expanduser()
    if (
        not path.is_file()
        and path.suffix != ".zip"
        and path.with_name(path.name + ".zip").is_file()
    ):
        path = path.with_name(path.name + ".zip")
    if not path.exists():
        raise ExpertError(f"SB3 expert checkpoint {path} does not exist")
    if not path.is_file():
        raise ExpertError(
            f"SB3 expert checkpoint {path} is not a file (for a Zoo run folder use zoo:FOLDER)"
        )
    return path


def load_model(path: Path, algorithm: str | None, trust_pickle: bool):
    """The model in SB3 zip `path`, rebuilt safely; by SB3's own loader (which runs pickled
    code) only when `trust_pickle` and ditto cannot rebuild it. `algorithm` None: guessed."""
    try:
        return _load_model_safely(path, algorithm)
    except _NeedsPickle as exc:
        if not trust_pickle:
            raise
        print(
            f"warning: --trust-pickle: {exc.entry} of {path} cannot be rebuilt safely, so "
            "stable-baselines3 unpickles the checkpoint, which runs any code pickled in it",
            file=sys.stderr,
        )
        return _load_model_with_sb3(path, algorithm)


def _load_model_with_sb3(path: Path, algorithm: str | None):
    """SB3's own loader: unpickles the checkpoint's entries, which may run code from the file."""
    data = read_zip_data(path)
    if algorithm is None:
        algorithm = _guess_algorithm(data)
    candidates = [algorithm] if algorithm else list(_CANDIDATES)
    errors = []
    for name in candidates:
        cls = _algorithm_class(name)
        try:
            return cls.load(path, device="cpu", custom_objects=dict(_PREDICT_ONLY_OBJECTS))
        except Exception as exc:  # SB3 raises anything from deep inside
            errors.append(f"{name}: {_first_line(exc)}")
    raise ExpertError(f"cannot load SB3 checkpoint {path} ({'; '.join(errors)})")


# Algorithms tried, in order, when a checkpoint does not say which it is.
_CANDIDATES = ("PPO", "A2C", "DQN", "SAC", "TD3")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class _NeedsPickle(ExpertError):
    """A checkpoint entry that only SB3's own loader can read: by unpickling it, running its code."""

    def __init__(self, path: Path, entry: str, why: str):
        self.entry = entry
        super().__init__(
            f"SB3 checkpoint {path}: {entry} {why}; ditto loads checkpoints without running "
            "code stored in them, so it refuses this one (--trust-pickle lets stable-baselines3 "
            "unpickle it, running any code it holds: only for files you trust)"
        )


def _load_model_safely(path: Path, algorithm: str | None):
    """The model in an SB3 zip, rebuilt from its data and its policy weights; what SB3's
    BaseAlgorithm.load does for prediction, but no pickled code runs."""
    data = read_zip_data(path)
    for key in ("policy_class", "observation_space", "action_space"):
        if key not in data:
            raise ExpertError(
                f"{path} is not a stable-baselines3 checkpoint (no {key} in its data)"
            )
    named = _entry(data, "policy_class", path)
    algorithm = algorithm or _guess_algorithm(data)
    candidates = [algorithm] if algorithm else list(_CANDIDATES)
    for name in candidates:
        cls = _algorithm_class(name)
        policy_class = _known_policy(cls, named)
        if policy_class is not None:
            break
    else:
        raise _NeedsPickle(
            path,
            "entry 'policy_class'",
            f"names {describe(named)}, which is not a {'/'.join(candidates)} policy of "
            "stable-baselines3 or sb3-contrib",
        )
    model = cls(policy=policy_class, env=None, device="cpu", _init_setup_model=False)
    # plain hyperparameters and counters (JSON, never pickled) go where SB3's loader puts them
    model.__dict__.update(
        (key, value)
        for key, value in data.items()
        if key in vars(model) and not (isinstance(value, dict) and ":serialized:" in value)
    )
    model.observation_space = _rebuild_space(data, "observation_space", path)
    model.action_space = _rebuild_space(data, "action_space", path)
    model.policy_kwargs = _rebuild_policy_kwargs(_entry(data, "policy_kwargs", path), path)
    model.use_sde = data.get("use_sde") is True
    model.policy = _build_policy(model, path)
    _load_policy_weights(model.policy, path)
    if model.use_sde:  # as SB3's loader does (deterministic actions do not use the noise)
        model.policy.reset_noise()
    if hasattr(model, "_create_aliases"):  # DQN's q_net, SAC's actor, ...
        model._create_aliases()
    return model


def _entry(data: dict[str, Any], key: str, path: Path) -> Any:
    """An entry of the zip's data: plain JSON as it is; a pickled one read as records."""
    value = data.get(key)
    if not (isinstance(value, dict) and ":serialized:" in value):
        return value
    try:
        raw = base64.b64decode(str(value[":serialized:"]).encode())
        return RecordUnpickler(io.BytesIO(raw)).load()
    except Exception as exc:  # a bad pickle fails in many ways, none of which ran its code
        raise _NeedsPickle(path, f"entry {key!r}", f"cannot be read ({_first_line(exc)})") from None


def _known_policy(cls, named: Any) -> type | None:
    """The policy class of algorithm `cls` that the record `named` stands for, if any."""
    name = record_global(named) if isinstance(named, type) else None
    for policy in cls.policy_aliases.values():
        if name == f"{policy.__module__}.{policy.__qualname__}":
            return policy
    return None


def _rebuild_space(data: dict[str, Any], key: str, path: Path) -> gym.spaces.Space:
    """A Box or Discrete space (gym or gymnasium) from its record, built by gymnasium from
    type-checked numbers and arrays only."""
    value = _entry(data, key, path)
    name = "" if isinstance(value, type) else record_global(value) or ""
    module, _, kind = name.rpartition(".")
    state = vars(value) if name else {}
    try:
        if module.startswith(("gym.spaces", "gymnasium.spaces")) and kind == "Box":
            low, high, dtype = state.get("low"), state.get("high"), state.get("dtype")
            if (
                _numeric_array(low)
                and _numeric_array(high)
                and low.shape == high.shape
                and isinstance(dtype, np.dtype)
                and dtype.kind in "biuf"
            ):
                return gym.spaces.Box(low=low, high=high, dtype=dtype)
        if module.startswith(("gym.spaces", "gymnasium.spaces")) and kind == "Discrete":
            n, start = state.get("n"), state.get("start", 0)
            if _is_number(n) and _is_number(start) and int(n) == n and int(start) == start:
                return gym.spaces.Discrete(int(n), start=int(start))
    except (ValueError, TypeError, AssertionError) as exc:
        raise _NeedsPickle(
            path, f"entry {key!r}", f"is a {name} gymnasium refuses ({_first_line(exc)})"
        ) from None
    raise _NeedsPickle(
        path, f"entry {key!r}", f"is {describe(value)}, not a Box or Discrete space ditto rebuilds"
    )


def _rebuild_policy_kwargs(value: Any, path: Path) -> dict[str, Any]:
    """The policy's constructor arguments: plain values, plus the two classes SB3 policies
    take, looked up among the installed activation modules and SB3 features extractors."""
    import torch
    import torch.nn.modules.activation as activations
    from stable_baselines3.common import torch_layers

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _NeedsPickle(path, "entry 'policy_kwargs'", f"is {describe(value)}, not a dict")
    # the optimizer only trains; SB3's loader drops the device as well
    dropped = ("device", "optimizer_class", "optimizer_kwargs")
    kwargs = {key: item for key, item in value.items() if key not in dropped}
    classes = {
        "activation_fn": (activations, torch.nn.Module),
        "features_extractor_class": (torch_layers, torch_layers.BaseFeaturesExtractor),
    }
    for key, item in list(kwargs.items()):
        entry = f"policy_kwargs[{key!r}]"
        if key in classes:
            kwargs[key] = _named_class(item, *classes[key], path, entry)
        elif not isinstance(key, str) or not _is_plain(item):
            raise _NeedsPickle(path, entry, f"holds {describe(item)}, which ditto does not rebuild")
    net_arch = kwargs.get("net_arch")
    if isinstance(net_arch, list) and net_arch and isinstance(net_arch[0], dict):
        kwargs["net_arch"] = net_arch[0]  # SB3 < 1.8's layout, converted as SB3's loader does
    return kwargs


def _named_class(value: Any, module, base: type, path: Path, entry: str) -> type:
    """The subclass of `base` defined in `module` that the record class `value` names."""
    name = record_global(value) if isinstance(value, type) else None
    home, _, attr = (name or "").rpartition(".")
    found = getattr(module, attr, None) if home == module.__name__ else None
    if isinstance(found, type) and issubclass(found, base):
        return found
    raise _NeedsPickle(path, entry, f"names {describe(value)}, which ditto does not rebuild")


def _is_plain(value: Any, depth: int = 0) -> bool:
    """Numbers, strings, None, and lists / tuples / dicts of them (not too deep: no cycles)."""
    if value is None or isinstance(value, (bool, int, float, str, np.bool_, np.number)):
        return True
    if depth > 8:
        return False
    if isinstance(value, (list, tuple)):
        return all(_is_plain(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def _build_policy(model, path: Path):
    """The policy, made as the algorithm's _setup_model makes it (without its buffers and
    schedules, which only training uses)."""
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

    if isinstance(model, OnPolicyAlgorithm):
        extra = {"use_sde": model.use_sde}
    elif isinstance(model, OffPolicyAlgorithm):
        extra = {}  # SAC's use_sde is in its policy_kwargs
    else:
        raise _NeedsPickle(path, f"its {type(model).__name__} policy", "is not rebuilt by ditto")
    try:
        return model.policy_class(
            model.observation_space,
            model.action_space,
            _PREDICT_ONLY_OBJECTS["lr_schedule"],
            **extra,
            **model.policy_kwargs,
        )
    except Exception as exc:  # SB3 raises anything from deep inside
        raise ExpertError(
            f"SB3 checkpoint {path}: cannot build its {model.policy_class.__name__} "
            f"({_first_line(exc)})"
        ) from None


def _load_policy_weights(policy, path: Path) -> None:
    import torch

    try:
        with zipfile.ZipFile(path) as archive:
            raw = archive.read("policy.pth")
    except KeyError:
        raise ExpertError(f"SB3 checkpoint {path} has no policy weights (policy.pth)") from None
    try:  # torch's restricted unpickler: tensors and plain containers, nothing that runs code
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ExpertError(
            f"SB3 checkpoint {path}: policy.pth is not plain weights (tensors only), "
            f"so ditto refuses to unpickle it ({type(exc).__name__})"
        ) from None
    try:
        result = policy.load_state_dict(state, strict=False)
    except Exception as exc:  # not a dict, wrong shapes, ...
        raise ExpertError(
            f"SB3 checkpoint {path}: policy.pth does not fit its policy ({_first_line(exc)})"
        ) from None
    # SB3 < 1.7 saved a shared features extractor once; pi_/vf_features_extractor alias it
    aliases = ("pi_features_extractor.", "vf_features_extractor.")
    shared = getattr(policy, "share_features_extractor", False)
    missing = [k for k in result.missing_keys if not (shared and k.startswith(aliases))]
    if missing or result.unexpected_keys:
        raise ExpertError(
            f"SB3 checkpoint {path}: policy.pth does not fit its policy "
            f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})"
        )


def load_sb3_expert(
    path: str, env_id: str, *, trust_pickle: bool = False, seed: int | None = None
) -> SB3Expert:
    """An expert from a stable-baselines3 checkpoint `path` (optionally `ALGO:path`).

    The algorithm is read from the checkpoint; `PATH.vecnormalize.pkl` next to the zip
    (see `vecnormalize_path`) supplies observation normalisation when it exists. Atari
    checkpoints are taken to be trained with SB3's default AtariWrapper, their channels
    being the stacked frames. No code from the files runs, unless `trust_pickle` lets SB3
    load a checkpoint that ditto cannot rebuild on its own. `seed` seeds the actions of an
    expert that samples them (see `ditto.experts.sb3_expert`).
    """
    algorithm, path = split_algorithm(path)
    zip_path = _resolve_zip(path)
    model = load_model(zip_path, algorithm, trust_pickle)
    stats = vecnormalize_path(zip_path)
    normalizer = load_vecnormalize(stats) if stats.is_file() else None
    return build_expert(
        model,
        env_id,
        str(zip_path),
        normalizer=normalizer,
        frame_stack=None,
        atari_kwargs=None,
        time_feature_kwargs=None,
        seed=seed,
    )
