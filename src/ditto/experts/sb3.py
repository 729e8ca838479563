"""Experts from stable-baselines3 checkpoints and RL-Baselines3-Zoo run folders.

    expert = load_sb3_expert("experts/walker.zip", "BipedalWalker-v3")
    expert = load_sb3_expert("PPO:experts/walker.zip", "BipedalWalker-v3")  # algorithm named
    expert = load_zoo_expert("rl-trained-agents/ppo/BreakoutNoFrameskip-v4_1", "ALE/Breakout-v5")

The agent acts on its OWN observation, not on the 64x64 frame the dataset records:

- envs whose agent was trained on the state vector: `env.get_wrapper_attr("state")`;
- Atari agents trained with SB3's AtariWrapper: a stack of 84x84 grayscale frames
  built from the full-resolution max-pooled RGB screen (`env.get_wrapper_attr("screen")`),
  so the env must be made with `keep_screen=True` (`expert.keep_screen` says so).
  The expert also replays what AtariWrapper hid from the agent during training: the
  frame stack restarts (zeros) after every reset and lost life, and games with a FIRE
  button get FIRE then action 2 after a reset (plus a NOOP first after a lost life),
  as SB3's EpisodicLifeEnv and FireResetEnv do. These steps are the expert's actions.

Observation normalisation (VecNormalize statistics) is applied without updates:

- `sb3:PATH.zip` uses `PATH.vecnormalize.pkl` (PATH without `.zip`) when it exists;
  `train_ppo` writes that file next to the model it saves;
- `zoo:FOLDER` uses `FOLDER/<ENV>/vecnormalize.pkl` when config.yml asks for `normalize`.

Nothing in a checkpoint runs code (experts are files people download):

- the zip's `data` JSON is parsed here; its pickled (`:serialized:`) entries become inert
  records, and the policy class, the observation and action spaces and the policy's
  arguments are rebuilt from those and from the plain fields; the model is built without
  SB3's loader, and its weights come from `policy.pth` through `torch.load(weights_only=True)`.
  What cannot be rebuilt that way is refused, naming the entry; `trust_pickle=True`
  (`--trust-pickle`) then lets SB3's own loader unpickle it, running any code in it.
  Entries that only training uses (schedules, buffer classes) are not read at all;
- vecnormalize.pkl gives only its statistics, read by the same record unpickler;
- config.yml is parsed by a safe YAML loader that understands the Zoo's OrderedDict tag.

Atari experts with a policy distribution (PPO, A2C) sample their actions, seeded by the
expert's seed, as RL-Baselines3-Zoo's enjoy.py does for Atari (a greedy Atari policy can
repeat one game, or stall, forever); other experts act deterministically.

`act` must be called exactly once per env step (it advances the frame stack), and
`reset(env)` after every `env.reset()`.
"""

from __future__ import annotations

import _compat_pickle
import base64
import io
import json
import pickle
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import yaml

from ditto.envs import env_spec, is_atari
from ditto.errors import ExpertError
from ditto.experts.base import Expert
from ditto.specs import ActionSpec

__all__ = [
    "ALGORITHMS",
    "AtariPreprocessing",
    "ObsNormalizer",
    "SB3Expert",
    "load_sb3_expert",
    "load_vecnormalize",
    "load_zoo_config",
    "load_zoo_expert",
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


# --------------------------------------------------------------------------------------------
# Pickles (VecNormalize statistics, checkpoint entries) read without running their code:
# every class they name becomes an inert record.


@dataclass
class ObsNormalizer:
    """VecNormalize's observation normalisation, frozen: clip((obs - mean) / sqrt(var + eps))."""

    mean: np.ndarray
    var: np.ndarray
    clip_obs: float
    epsilon: float

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        scaled = (np.asarray(obs, dtype=np.float64) - self.mean) / np.sqrt(self.var + self.epsilon)
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)


class _Record:
    """Stands in for any SB3 / gym class in a pickle: keeps its attributes, runs no code."""

    _ditto_global = "?"  # module.name of the class it stands for

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        parts = state if isinstance(state, tuple) else (state,)  # (dict, slots) or anything
        for part in parts:
            if isinstance(part, dict):
                self.__dict__.update(part)

    def __repr__(self) -> str:
        return f"<{self._ditto_global}>"


# Modules whose classes and functions a pickle may name: they load as records, never imported.
_RECORD_MODULES = (
    "stable_baselines3",
    "sb3_contrib",
    "rl_zoo3",
    "gym",
    "gymnasium",
    "numpy.random",  # RNG state
    "torch.nn.modules.activation",  # policy_kwargs' activation_fn
    "torch.optim",  # policy_kwargs' optimizer_class (not rebuilt: predicting needs no optimizer)
)
_SAFE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
    ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),  # bytes in protocols 0-2
    *(
        ("builtins", t)
        for t in ("object", "set", "frozenset", "slice", "complex", "bytes", "bytearray")
    ),
    *(("builtins", t) for t in ("str", "int", "float", "bool", "list", "tuple", "dict")),
}


class _RecordUnpickler(pickle.Unpickler):
    """Loads numpy arrays and plain containers for real, SB3/gym objects as _Records; refuses
    every other global, so no function named in the pickle is ever called."""

    _records: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str):
        # Python 2 names (protocols 0-2), mapped as pickle.Unpickler(fix_imports=True) does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module.startswith(("numpy.core.", "numpy._core.")):  # numpy 1.x / 2.x spellings
            rest = module.split(".", 2)[2]
            if ("numpy._core." + rest, name) in _SAFE_GLOBALS:
                for spelling in ("numpy._core.", "numpy.core."):
                    try:
                        return super().find_class(spelling + rest, name)
                    except (ImportError, AttributeError):
                        continue
        elif (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        if any(module == m or module.startswith(m + ".") for m in _RECORD_MODULES):
            key = (module, name)
            if key not in self._records:
                self._records[key] = type(name, (_Record,), {"_ditto_global": f"{module}.{name}"})
            return self._records[key]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _record_global(value: Any) -> str | None:
    """'module.name' of the class a record (or record class) stands for; None for real objects."""
    cls = value if isinstance(value, type) else type(value)
    return cls._ditto_global if issubclass(cls, _Record) else None


def _describe(value: Any) -> str:
    return _record_global(value) or type(value).__name__


def _read_stats_pickle(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return _RecordUnpickler(f).load()
    except Exception as exc:  # a bad pickle fails in many ways, none of which ran its code
        raise ExpertError(
            f"cannot read VecNormalize statistics {path}: {_first_line(exc)}"
        ) from None


def load_vecnormalize(path: str | Path) -> ObsNormalizer | None:
    """The observation normalisation saved by VecNormalize.save(path); None if it had norm_obs=False."""
    path = Path(path)
    if not path.is_file():
        raise ExpertError(f"VecNormalize statistics {path} do not exist")
    saved = _read_stats_pickle(path)
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


# --------------------------------------------------------------------------------------------
# The expert.


@dataclass
class AtariPreprocessing:
    """What SB3's AtariWrapper did to the agent's observations and episodes (its kwargs)."""

    screen_size: int = 84
    frame_skip: int = 4
    terminal_on_life_loss: bool = True
    fire_reset: bool = True  # applies to games whose action 1 is FIRE, as FireResetEnv does


@dataclass
class _TimeFeature:
    """sb3-contrib's TimeFeatureWrapper: appends 1 - t / max_steps (1.0 in test mode)."""

    max_steps: int
    test_mode: bool = False


@dataclass
class _Layout:
    """How one observation becomes the policy's input."""

    single_shape: tuple[int, ...]  # one observation (images channel-last), before stacking
    n_stack: int = 1  # VecFrameStack along the last axis, oldest first, zeros after reset
    channels_first: bool = False  # the policy wants (C, H, W) (VecTransposeImage)
    pending_after_reset: list[int] = field(default_factory=list)
    pending_after_life_loss: list[int] = field(default_factory=list)


class SB3Expert(Expert):
    """A stable-baselines3 policy acting on its own observation: sampling its actions with
    `rng` when one is given, its most likely action otherwise."""

    def __init__(
        self,
        model,
        env_id: str,
        layout: _Layout,
        *,
        source: str,
        normalizer: ObsNormalizer | None = None,
        atari: AtariPreprocessing | None = None,
        time_feature: _TimeFeature | None = None,
        rng: np.random.Generator | None = None,
    ):
        self.model, self.env_id, self.source, self.rng = model, env_id, source, rng
        self.layout, self.normalizer = layout, normalizer
        self.atari, self.time_feature = atari, time_feature
        self.keep_screen = atari is not None
        self.discrete = isinstance(model.action_space, gym.spaces.Discrete)
        # normalised observations stay float32, as VecNormalize hands them to the policy
        self._dtype = np.float32 if normalizer is not None else model.observation_space.dtype
        self._stack: np.ndarray | None = None
        self._pending: list[int] = []
        self._lives = 0
        self._t = 0

    def reset(self, env: gym.Env) -> None:
        self._stack = None
        self._t = 0
        self._pending = list(self.layout.pending_after_reset)
        if self.atari is not None:
            frame_skip = _wrapper_attr(env, "frame_skip", None)
            if frame_skip is not None and frame_skip != self.atari.frame_skip:
                raise ExpertError(
                    f"SB3 expert {self.source} was trained with frame skip {self.atari.frame_skip}, "
                    f"but the env skips {frame_skip} frames"
                )
            self._lives = int(env.unwrapped.ale.lives())

    def act(self, env: gym.Env, frame: np.ndarray) -> int | np.ndarray:
        if self.atari is not None:
            lives = int(env.unwrapped.ale.lives())
            if self.atari.terminal_on_life_loss and 0 < lives < self._lives:
                # AtariWrapper ended the agent's episode here: a fresh frame stack after
                # EpisodicLifeEnv's NOOP and FireResetEnv's FIRE, 2.
                self._stack = None
                self._pending = list(self.layout.pending_after_life_loss)
            self._lives = lives
            if self._pending:
                return self._pending.pop(0)
        obs = self._observe(env)
        self._t += 1
        if self.rng is not None:
            return self._sample(obs)
        action, _ = self.model.predict(obs, deterministic=True)
        if self.discrete:
            return int(np.asarray(action).reshape(-1)[0])
        return np.asarray(action, dtype=np.float32).reshape(-1)

    def _sample(self, obs: np.ndarray) -> int:
        """An action drawn from the policy's distribution with the expert's own generator."""
        import torch

        obs_tensor, _ = self.model.policy.obs_to_tensor(obs)
        with torch.no_grad():
            probs = self.model.policy.get_distribution(obs_tensor).distribution.probs
        probs = probs.reshape(-1).double().numpy()
        return int(self.rng.choice(len(probs), p=probs / probs.sum()))

    def _single(self, env: gym.Env) -> np.ndarray:
        if self.atari is not None:
            import cv2

            screen = _wrapper_attr(env, "screen", None)
            if screen is None:
                raise ExpertError(
                    f"SB3 expert {self.source} builds its 84x84 frames from the full screen: "
                    "make the env with keep_screen=True (see expert.keep_screen)"
                )
            size = self.atari.screen_size
            gray = cv2.cvtColor(screen, cv2.COLOR_RGB2GRAY)
            return cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)[:, :, None]
        state = _wrapper_attr(env, "state", None)
        if state is None:
            raise ExpertError(
                f"SB3 expert {self.source} acts on the env's state vector, but the env keeps none "
                "(make it with ditto.envs.make_env)"
            )
        state = np.asarray(state)
        if self.time_feature is not None:
            tf = self.time_feature
            feature = 1.0 if tf.test_mode else 1.0 - self._t / tf.max_steps
            state = np.append(state, np.asarray(feature, dtype=state.dtype))
        return state

    def _observe(self, env: gym.Env) -> np.ndarray:
        single = self._single(env)
        if single.shape != self.layout.single_shape:
            raise ExpertError(
                f"SB3 expert {self.source}: the env gave an observation of shape {single.shape}, "
                f"expected {self.layout.single_shape}"
            )
        if self.normalizer is not None:
            single = self.normalizer(single)
        n = self.layout.n_stack
        if n == 1:
            obs = single
        else:
            c = single.shape[-1]
            if self._stack is None:
                self._stack = np.zeros((*single.shape[:-1], c * n), dtype=self._dtype)
            self._stack[..., :-c] = self._stack[..., c:]
            self._stack[..., -c:] = single
            obs = self._stack
        if self.layout.channels_first:
            obs = obs.transpose(2, 0, 1)
        return np.ascontiguousarray(obs, dtype=self._dtype)


def _wrapper_attr(env: gym.Env, name: str, default: Any) -> Any:
    try:
        return env.get_wrapper_attr(name)
    except AttributeError:
        return default


# --------------------------------------------------------------------------------------------
# Loading checkpoints.


def _read_zip_data(path: Path) -> dict[str, Any]:
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


def _split_algorithm(spec: str) -> tuple[str | None, str]:
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


def _load_model(path: Path, algorithm: str | None, trust_pickle: bool):
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
    data = _read_zip_data(path)
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
    data = _read_zip_data(path)
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
            f"names {_describe(named)}, which is not a {'/'.join(candidates)} policy of "
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
        return _RecordUnpickler(io.BytesIO(raw)).load()
    except Exception as exc:  # a bad pickle fails in many ways, none of which ran its code
        raise _NeedsPickle(path, f"entry {key!r}", f"cannot be read ({_first_line(exc)})") from None


def _known_policy(cls, named: Any) -> type | None:
    """The policy class of algorithm `cls` that the record `named` stands for, if any."""
    name = _record_global(named) if isinstance(named, type) else None
    for policy in cls.policy_aliases.values():
        if name == f"{policy.__module__}.{policy.__qualname__}":
            return policy
    return None


def _rebuild_space(data: dict[str, Any], key: str, path: Path) -> gym.spaces.Space:
    """A Box or Discrete space (gym or gymnasium) from its record, built by gymnasium from
    type-checked numbers and arrays only."""
    value = _entry(data, key, path)
    name = "" if isinstance(value, type) else _record_global(value) or ""
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
        path, f"entry {key!r}", f"is {_describe(value)}, not a Box or Discrete space ditto rebuilds"
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
        raise _NeedsPickle(path, "entry 'policy_kwargs'", f"is {_describe(value)}, not a dict")
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
            raise _NeedsPickle(
                path, entry, f"holds {_describe(item)}, which ditto does not rebuild"
            )
    net_arch = kwargs.get("net_arch")
    if isinstance(net_arch, list) and net_arch and isinstance(net_arch[0], dict):
        kwargs["net_arch"] = net_arch[0]  # SB3 < 1.8's layout, converted as SB3's loader does
    return kwargs


def _named_class(value: Any, module, base: type, path: Path, entry: str) -> type:
    """The subclass of `base` defined in `module` that the record class `value` names."""
    name = _record_global(value) if isinstance(value, type) else None
    home, _, attr = (name or "").rpartition(".")
    found = getattr(module, attr, None) if home == module.__name__ else None
    if isinstance(found, type) and issubclass(found, base):
        return found
    raise _NeedsPickle(path, entry, f"names {_describe(value)}, which ditto does not rebuild")


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


def _check_actions(model, action: ActionSpec, env_id: str, source: str) -> None:
    space = model.action_space
    if isinstance(space, gym.spaces.Discrete):
        found = ("discrete", int(space.n))
    elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        found = ("continuous", int(space.shape[0]))
    else:
        raise ExpertError(
            f"SB3 expert {source} has action space {space}, which ditto does not support"
        )
    if found != (action.kind, action.n):
        raise ExpertError(
            f"SB3 expert {source} has {found[0]}({found[1]}) actions, "
            f"but {env_id} has {action.kind}({action.n}) actions"
        )


def _state_shape(env_id: str) -> tuple[int, ...]:
    env = gym.make(env_id)
    try:
        space = env.observation_space
    finally:
        env.close()
    if not isinstance(space, gym.spaces.Box):
        raise ExpertError(f"{env_id} has observation space {space}; SB3 experts need a Box state")
    return tuple(int(s) for s in space.shape)


def _stacked(single: tuple[int, ...], n_stack: int) -> tuple[int, ...]:
    return (*single[:-1], single[-1] * n_stack)


def _channels_first(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[-1], *shape[:-1])


def _build_expert(
    model,
    env_id: str,
    source: str,
    *,
    normalizer: ObsNormalizer | None,
    frame_stack: int | None,
    atari_kwargs: dict[str, Any] | None,
    time_feature_kwargs: dict[str, Any] | None,
    seed: int | None,
) -> SB3Expert:
    spec = env_spec(env_id)
    _check_actions(model, spec.action, env_id, source)
    space = model.observation_space
    found = tuple(int(s) for s in getattr(space, "shape", ()) or ())
    if not isinstance(space, gym.spaces.Box):
        raise ExpertError(f"SB3 expert {source} has observation space {space}; ditto needs a Box")

    atari: AtariPreprocessing | None = None
    time_feature: _TimeFeature | None = None
    layout: _Layout | None = None
    if is_atari(env_id):
        atari = AtariPreprocessing(**_known_kwargs(AtariPreprocessing, atari_kwargs or {}))
        size = atari.screen_size
        stack = frame_stack
        if stack is None and len(found) == 3:
            # an sb3: checkpoint without config: the channels are the stacked grayscale frames
            stack = found[-1] if found[:2] == (size, size) else found[0]
        stack = stack or 1
        single = (size, size, 1)
        expected = _stacked(single, stack)
        if found == expected:
            layout = _Layout(single, stack, channels_first=False)
        elif found == _channels_first(expected):
            layout = _Layout(single, stack, channels_first=True)
        else:
            shapes = (
                f"{_channels_first(expected)} or {expected}"
                if frame_stack
                else f"(k, {size}, {size}) or ({size}, {size}, k)"
            )
            raise ExpertError(
                f"SB3 expert {source} expects observations of shape {found}, but an Atari expert "
                f"for {env_id} needs {frame_stack or 'k'} stacked {size}x{size} grayscale frames "
                f"(SB3's AtariWrapper): shape {shapes}"
            )
        meanings = spec.action.meanings or ()
        fire = atari.fire_reset and len(meanings) >= 3 and meanings[1] == "FIRE"
        layout.pending_after_reset = [1, 2] if fire else []
        layout.pending_after_life_loss = [0, 1, 2] if fire else [0]
    else:
        state = _state_shape(env_id)
        if time_feature_kwargs is not None:
            if len(state) != 1:
                raise ExpertError(f"TimeFeatureWrapper needs a 1-d state; {env_id} has {state}")
            max_steps = gym.spec(env_id).max_episode_steps or int(
                time_feature_kwargs.get("max_steps", 1000)
            )
            time_feature = _TimeFeature(
                max_steps, bool(time_feature_kwargs.get("test_mode", False))
            )
            state = (state[0] + 1,)
        stack = frame_stack or 1
        expected = _stacked(state, stack)
        if found == expected:
            layout = _Layout(state, stack)
        elif len(state) == 3 and found == _channels_first(expected):  # an image state (CarRacing)
            layout = _Layout(state, stack, channels_first=True)
        else:
            what = f"{env_id}'s state vector" + (f" stacked {stack} times" if stack > 1 else "")
            raise ExpertError(
                f"SB3 expert {source} expects observations of shape {found}, but {what} has "
                f"shape {expected}; is the checkpoint for another env?"
            )
    if normalizer is not None and normalizer.mean.shape != layout.single_shape:
        raise ExpertError(
            f"SB3 expert {source}: VecNormalize statistics have shape {normalizer.mean.shape}, "
            f"but one observation has shape {layout.single_shape}"
        )
    return SB3Expert(
        model,
        env_id,
        layout,
        source=source,
        normalizer=normalizer,
        atari=atari,
        time_feature=time_feature,
        rng=np.random.default_rng(seed) if _samples(model, env_id) else None,
    )


def _samples(model, env_id: str) -> bool:
    """Whether the expert samples its actions: Atari policies with a discrete distribution."""
    return (
        is_atari(env_id)
        and isinstance(model.action_space, gym.spaces.Discrete)
        and hasattr(model.policy, "get_distribution")
    )


def _known_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
    known = {f for f in cls.__dataclass_fields__}
    return {k: v for k, v in kwargs.items() if k in known}


def load_sb3_expert(
    path: str, env_id: str, *, trust_pickle: bool = False, seed: int | None = None
) -> SB3Expert:
    """An expert from a stable-baselines3 checkpoint `path` (optionally `ALGO:path`).

    The algorithm is read from the checkpoint; `PATH.vecnormalize.pkl` next to the zip
    (see `vecnormalize_path`) supplies observation normalisation when it exists. Atari
    checkpoints are taken to be trained with SB3's default AtariWrapper, their channels
    being the stacked frames. No code from the files runs, unless `trust_pickle` lets SB3
    load a checkpoint that ditto cannot rebuild on its own. `seed` seeds the actions of an
    expert that samples them (see the module's docstring).
    """
    algorithm, path = _split_algorithm(path)
    zip_path = _resolve_zip(path)
    model = _load_model(zip_path, algorithm, trust_pickle)
    stats = vecnormalize_path(zip_path)
    normalizer = load_vecnormalize(stats) if stats.is_file() else None
    return _build_expert(
        model,
        env_id,
        str(zip_path),
        normalizer=normalizer,
        frame_stack=None,
        atari_kwargs=None,
        time_feature_kwargs=None,
        seed=seed,
    )


# --------------------------------------------------------------------------------------------
# RL-Baselines3-Zoo run folders.


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
    algorithm, folder = _split_algorithm(folder)
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

    model = _load_model(zip_path, algorithm, trust_pickle)
    return _build_expert(
        model,
        env_id,
        str(zip_path),
        normalizer=normalizer,
        frame_stack=frame_stack,
        atari_kwargs=atari_kwargs,
        time_feature_kwargs=time_feature_kwargs,
        seed=seed,
    )
