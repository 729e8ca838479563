"""Train a PPO expert with stable-baselines3, resumably.

    path = train_ppo("BipedalWalker-v3", 5_000_000, "experts/walker.zip")
    expert = make_expert(f"sb3:{path}", "BipedalWalker-v3")

The expert learns on the env's own observation, not on pixels: the state vector for
gymnasium envs (gym.make(env_id)), 4 stacked 84x84 grayscale frames made by SB3's
AtariWrapper for Atari (ALE/<Game>-v5 without frame skip or sticky actions, i.e.
<Game>NoFrameskip-v4), which is what load_sb3_expert rebuilds when collecting.

Hyperparameters are RL-Baselines3-Zoo's tuned PPO ones where ditto has them
(CartPole-v1, BipedalWalker-v3, Atari), SB3's defaults with 8 envs otherwise.

Files, for out_path = experts/walker.zip:

    experts/walker.zip                            the final model
    experts/walker.vecnormalize.pkl               its VecNormalize statistics (normalising envs)
    experts/walker.checkpoint.zip                 the latest checkpoint (every checkpoint_every steps,
    experts/walker.checkpoint.vecnormalize.pkl    and on Ctrl-C)

Every file is written to a temporary file and then renamed, so a crash never leaves a
truncated model. With resume=True a call continues from whichever of the final model
and the checkpoint has more steps, up to `steps` in total (a second call with a larger
`steps` trains further); a model that already has `steps` steps is returned as is.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

from ditto.envs import env_spec, is_atari
from ditto.errors import DittoError
from ditto.experts.sb3_checkpoint import read_stats_pickle, read_zip_data, vecnormalize_path
from ditto.io import atomic_write, atomic_write_bytes

__all__ = [
    "ATARI_HYPERPARAMS",
    "DEFAULT_HYPERPARAMS",
    "HYPERPARAMS",
    "checkpoint_path",
    "export_expert",
    "ppo_hyperparams",
    "train_ppo",
]

# RL-Baselines3-Zoo hyperparams/ppo.yml. "lin_X" is a schedule decaying linearly from X to 0.
# Keys besides PPO's arguments: n_envs, normalize (VecNormalize), policy, frame_stack.
HYPERPARAMS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "n_envs": 8,
        "n_steps": 32,
        "batch_size": 256,
        "gae_lambda": 0.8,
        "gamma": 0.98,
        "n_epochs": 20,
        "ent_coef": 0.0,
        "learning_rate": "lin_0.001",
        "clip_range": "lin_0.2",
    },
    "BipedalWalker-v3": {
        "normalize": True,
        "n_envs": 32,
        "n_steps": 2048,
        "batch_size": 64,
        "gae_lambda": 0.95,
        "gamma": 0.999,
        "n_epochs": 10,
        "ent_coef": 0.0,
        "learning_rate": 3e-4,
        "clip_range": 0.18,
    },
}
ATARI_HYPERPARAMS: dict[str, Any] = {
    "policy": "CnnPolicy",
    "frame_stack": 4,
    "n_envs": 8,
    "n_steps": 128,
    "n_epochs": 4,
    "batch_size": 256,
    "learning_rate": "lin_2.5e-4",
    "clip_range": "lin_0.1",
    "vf_coef": 0.5,
    "ent_coef": 0.01,
}
DEFAULT_HYPERPARAMS: dict[str, Any] = {"n_envs": 8}

_SETUP_KEYS = ("n_envs", "normalize", "policy", "frame_stack")
# The pickled entries of an SB3 zip's data that acting needs; the others only train
# (schedules, buffer classes, the last rollout's observations and episode infos).
_ACTING_ENTRIES = ("policy_class", "observation_space", "action_space", "policy_kwargs")
_SCHEDULE_KEYS = ("learning_rate", "clip_range")


def ppo_hyperparams(env_id: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The hyperparameters train_ppo uses for env_id, with `overrides` applied."""
    if is_atari(env_id):
        params = dict(ATARI_HYPERPARAMS)
    else:
        params = dict(HYPERPARAMS.get(env_id, DEFAULT_HYPERPARAMS))
    params.update(overrides or {})
    return params


def checkpoint_path(out_path: str | Path) -> Path:
    """experts/walker.zip -> experts/walker.checkpoint.zip."""
    out = _zip_path(out_path)
    return out.with_name(out.name[: -len(".zip")] + ".checkpoint.zip")


def _check_same_spaces(path: Path, venv, env_id: str) -> None:
    """A model at the --out path that was trained on another env is refused, not resumed."""
    from stable_baselines3.common.preprocessing import (
        is_image_space,
        is_image_space_channels_first,
    )
    from stable_baselines3.common.vec_env import VecTransposeImage

    observation = venv.observation_space
    if is_image_space(observation) and not is_image_space_channels_first(observation):
        observation = VecTransposeImage.transpose_space(observation)  # what PPO saw and saved
    data = read_zip_data(path)
    found = [_shape_and_n(data[key]) for key in ("observation_space", "action_space")]
    wanted = [
        (tuple(space.shape), str(space.n) if hasattr(space, "n") else None)
        for space in (observation, venv.action_space)
    ]
    if found != wanted:
        raise DittoError(
            f"{path} is a PPO expert for another env ({_describe(found)}; {env_id} has "
            f"{_describe(wanted)}); choose another --out"
        )


def _shape_and_n(saved_space: dict[str, Any]) -> tuple[tuple[int, ...], str | None]:
    """A space as SB3's zip records it: its shape, and its size n (as text) if discrete."""
    return tuple(saved_space["_shape"]), saved_space.get("n")


def _describe(spaces: list[tuple[tuple[int, ...], str | None]]) -> str:
    (observation, _), (action_shape, n) = spaces
    return f"observations {observation}, actions {f'0..{int(n) - 1}' if n else action_shape}"


def train_ppo(
    env_id: str,
    steps: int,
    out_path: str | os.PathLike,
    seed: int = 0,
    checkpoint_every: int = 100_000,
    resume: bool = True,
    progress: bool = True,
    *,
    hyperparams: dict[str, Any] | None = None,
    device: str = "auto",
    torch_threads: int | None = None,
    verbose: int = 0,
) -> str:
    """Train PPO on env_id for `steps` env steps in total; save to out_path (.zip); return its path.

    hyperparams: overrides of ppo_hyperparams(env_id) (PPO arguments plus n_envs,
    normalize, policy, frame_stack). device "auto" is the CPU for MLP policies.
    torch_threads: CPU threads for torch during training; None is 1 for MLP policies
    (their small matrix products run several times faster on one thread, far more so on
    a busy machine) and torch's default otherwise.
    """
    import torch
    from stable_baselines3 import PPO

    if steps < 1:
        raise DittoError(f"--steps must be >= 1, got {steps}")
    if checkpoint_every < 1:
        raise DittoError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    env_spec(env_id)  # a clear error for an unknown env id
    params = ppo_hyperparams(env_id, hyperparams)
    setup = {k: params.pop(k) for k in _SETUP_KEYS if k in params}
    policy = setup.get("policy", "CnnPolicy" if is_atari(env_id) else "MlpPolicy")
    schedules = {k: _schedule(params.pop(k)) for k in _SCHEDULE_KEYS if k in params}
    if device == "auto" and policy == "MlpPolicy":
        device = "cpu"  # SB3: small MLPs train faster on the CPU

    out = _zip_path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint_path(out)

    start = _resume_point(out, ckpt) if resume else None
    # A resumed run draws new episodes and samples (not a replay of the first ones).
    run_seed = seed if start is None else seed + _num_timesteps(start)
    if torch_threads is None and policy == "MlpPolicy":
        torch_threads = 1
    venv = _make_venv(env_id, setup, params.get("gamma", 0.99), run_seed)
    previous_threads = torch.get_num_threads()
    try:
        if start is not None:
            _check_same_spaces(start, venv, env_id)
        if start is not None and _num_timesteps(start) >= steps:
            _adopt_finished(start, out)
            return str(out)
        if torch_threads:
            torch.set_num_threads(torch_threads)
        if start is not None:
            model = PPO.load(
                start, env=venv, device=device, custom_objects=schedules, seed=run_seed
            )
            if _normalizer(venv) is not None:
                _restore_vecnormalize(venv, vecnormalize_path(start))
            if progress:
                print(
                    f"resuming {env_id} PPO from {start} at {model.num_timesteps} steps",
                    file=sys.stderr,
                )
        else:
            model = PPO(
                policy, venv, seed=seed, device=device, verbose=verbose, **params, **schedules
            )
        _learn(model, venv, steps, out, checkpoint_every, progress, fresh=start is None)
    finally:
        venv.close()
        torch.set_num_threads(previous_threads)
    return str(out)


def _adopt_finished(start: Path, out: Path) -> None:
    """A run resumed at or past its target: its checkpoint (and statistics) become the output."""
    if start != out:
        _copy_atomic(start, out)
        if vecnormalize_path(start).is_file():
            _copy_atomic(vecnormalize_path(start), vecnormalize_path(out))


def _learn(
    model, venv, steps: int, out: Path, checkpoint_every: int, progress: bool, fresh: bool
) -> None:
    """Train `model` up to `steps` env steps in all, checkpointing every `checkpoint_every`
    and on Ctrl-C; then save it to `out` and to its checkpoint."""
    ckpt = checkpoint_path(out)
    saver = _Saver(venv)
    try:
        model.learn(
            steps - model.num_timesteps,
            callback=_checkpoint_callback(checkpoint_every, lambda m: saver.save(m, ckpt)),
            progress_bar=progress,
            reset_num_timesteps=fresh,
        )
    except KeyboardInterrupt:
        saver.save(model, ckpt)
        raise
    saver.save(model, out)
    saver.save(model, ckpt)  # the checkpoint never lags behind the final model


def export_expert(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write the acting part of SB3 checkpoint `src` to `dst` (.zip); return dst's path.

    Kept: the policy's weights (policy.pth, byte for byte), the data entries that
    rebuild the policy (its class, spaces and arguments) and the plain hyperparameters
    and counters. Dropped: the optimizer's moments (its settings stay, so that SB3's own
    loader reads the file too), the pickled schedules and the last rollout. The VecNormalize statistics next to `src` are copied next to `dst`. The
    result acts exactly as `src` does and is about a third of a PPO checkpoint's size.
    """
    src, dst = _zip_path(src), _zip_path(dst)
    if not src.is_file():
        raise DittoError(f"{src} does not exist; give an SB3 checkpoint (.zip)")
    if src.resolve() == dst.resolve():
        raise DittoError(f"--out {dst} is the checkpoint itself; choose another path")
    data = read_zip_data(src)
    kept = {
        key: value
        for key, value in data.items()
        if key in _ACTING_ENTRIES or not (isinstance(value, dict) and ":serialized:" in value)
    }
    with zipfile.ZipFile(src) as archive:
        names = set(archive.namelist())
        if "policy.pth" not in names:
            raise DittoError(f"{src} has no policy weights (policy.pth)")
        entries = {
            name: archive.read(name)
            for name in ("policy.pth", "_stable_baselines3_version", "system_info.txt")
            if name in names
        }
        if "policy.optimizer.pth" in names:  # SB3's own loader wants one: keep it, empty
            entries["policy.optimizer.pth"] = _without_moments(archive.read("policy.optimizer.pth"))

    def write(f) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as out:
            out.writestr("data", json.dumps(kept, indent=4))
            for name, raw in entries.items():
                out.writestr(name, raw)

    dst.parent.mkdir(parents=True, exist_ok=True)
    if vecnormalize_path(src).is_file():
        _copy_atomic(vecnormalize_path(src), vecnormalize_path(dst))
    atomic_write(dst, write)
    return dst


def _without_moments(raw: bytes) -> bytes:
    """An optimizer's saved state without its per-parameter state (Adam's moments)."""
    import io

    import torch

    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        state = {"state": {}, "param_groups": state["param_groups"]}
    except Exception as exc:
        raise DittoError(f"the checkpoint's policy.optimizer.pth is unreadable ({exc})") from None
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------


def _zip_path(path: str | os.PathLike) -> Path:
    """The .zip file `path` names (SB3 adds .zip to a name without it). A folder is refused:
    `DIR` would become a `DIR.zip` beside it, which no one asked for."""
    given = Path(path).expanduser()
    out = given if given.name.endswith(".zip") else given.with_name(given.name + ".zip")
    folder = next((p for p in (given, out) if p.is_dir()), None)
    if folder is not None:
        raise DittoError(f"{folder} is a folder; give a file path, e.g. {folder / 'expert.zip'}")
    return out


def _schedule(value: Any):
    """A float, or the Zoo's "lin_X": linear from X (start of training) to 0."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[len("lin_") :])
        try:
            from stable_baselines3.common.utils import LinearSchedule as linear
        except ImportError:  # stable-baselines3 < 2.6
            from stable_baselines3.common.utils import get_linear_fn as linear
        return linear(start, 0.0, 1.0)
    return value


def _num_timesteps(path: Path) -> int:
    return int(read_zip_data(path).get("num_timesteps", 0))


def _resume_point(out: Path, ckpt: Path) -> Path | None:
    candidates = [p for p in (out, ckpt) if p.is_file()]
    if not candidates:
        return None
    return max(candidates, key=_num_timesteps)  # ties: the final model


def _make_venv(env_id: str, setup: dict[str, Any], gamma: float, seed: int):
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecNormalize

    n_envs = int(setup.get("n_envs", 8))
    if is_atari(env_id):
        # ALE/<Game>-v5 as <Game>NoFrameskip-v4: AtariWrapper skips frames itself.
        venv = make_atari_env(
            env_id,
            n_envs=n_envs,
            seed=seed,
            env_kwargs={
                "frameskip": 1,
                "repeat_action_probability": 0.0,
                "full_action_space": False,
            },
            vec_env_cls=DummyVecEnv,
        )
        frame_stack = int(setup.get("frame_stack", 4) or 1)
        if frame_stack > 1:
            venv = VecFrameStack(venv, frame_stack)
    else:
        venv = make_vec_env(env_id, n_envs=n_envs, seed=seed, vec_env_cls=DummyVecEnv)
        if setup.get("frame_stack"):
            raise DittoError(
                "frame_stack is supported for Atari only (load_sb3_expert cannot rebuild it)"
            )
    normalize = setup.get("normalize", False)
    if normalize:
        kwargs = dict(normalize) if isinstance(normalize, dict) else {}
        kwargs.setdefault("gamma", gamma)
        venv = VecNormalize(venv, **kwargs)
    return venv


def _normalizer(venv):
    from stable_baselines3.common.vec_env import VecNormalize

    return venv if isinstance(venv, VecNormalize) else None


def _restore_vecnormalize(venv, path: Path) -> None:
    if not path.is_file():
        raise DittoError(
            f"cannot resume: {path} (the VecNormalize statistics of the checkpoint) is missing"
        )
    saved = read_stats_pickle(path)
    for name in ("obs_rms", "ret_rms"):
        src, dst = getattr(saved, name, None), getattr(venv, name)
        if src is None or getattr(src, "mean", None) is None:
            raise DittoError(f"cannot resume: {path} has no {name}")
        if dst.mean.shape != src.mean.shape:
            raise DittoError(
                f"cannot resume: {path} has {name} of shape {src.mean.shape}, expected {dst.mean.shape}"
            )
        dst.mean, dst.var, dst.count = src.mean.copy(), src.var.copy(), float(src.count)


class _Saver:
    """Writes model (and VecNormalize statistics first) atomically."""

    def __init__(self, venv):
        self.venv = venv

    def save(self, model, path: Path) -> None:
        norm = _normalizer(self.venv)
        if norm is not None:
            atomic_write(vecnormalize_path(path), lambda f: pickle.dump(norm, f))
        atomic_write(path, model.save)


def _copy_atomic(src: Path, dst: Path) -> None:
    atomic_write_bytes(dst, src.read_bytes())


def _checkpoint_callback(every: int, save):
    from stable_baselines3.common.callbacks import BaseCallback

    class Checkpoint(BaseCallback):
        """Saves between rollouts (after the previous update) once `every` steps have passed."""

        def _on_training_start(self) -> None:
            self.last = self.model.num_timesteps

        def _on_rollout_start(self) -> None:
            if self.model.num_timesteps - self.last >= every:
                save(self.model)
                self.last = self.model.num_timesteps

        def _on_step(self) -> bool:
            return True

    return Checkpoint()
