"""Honest evaluation in the real environment, under the paper's protocol (after Agarwal et al. 2021).

The score of a run is the mean return over its last 10 policy snapshots x 20
episodes each, with the standard error of those returns. The expert-normalised
score is (agent - random) / (expert - random), with the random policy's return
measured on the same env and the expert's taken from the expert dataset. Across
runs (seeds), the IQM of normalised scores with a bootstrap confidence interval
comes from the rliable library. Evaluation only reads the run directory.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ditto.agents.registry import config_from_json, get_method
from ditto.agents.trainer import SNAPSHOTS, load_agent_world_model
from ditto.checkpoint import Checkpoint, load_checkpoint
from ditto.config import AgentConfig
from ditto.device import resolve_device
from ditto.envs import check_sticky_actions, env_spec, make_vector_env
from ditto.errors import DittoError
from ditto.evaluation.policy import LatentAgent, PixelAgent, RandomAgent
from ditto.runs import read_config
from ditto.specs import EnvSpec


def run_episodes(
    agent,
    env_id: str,
    spec: EnvSpec,
    episodes: int,
    num_envs: int,
    seed: int,
    sticky_actions: bool = False,
) -> list[float]:
    """Returns of `episodes` full episodes of `agent` in `num_envs` vectorised envs.

    Env i plays a fixed quota of episodes (episodes split evenly), so that the
    result does not favour short episodes, as stopping at the first N would.
    """
    num_envs = max(1, min(num_envs, episodes))
    quota = np.full(num_envs, episodes // num_envs) + (np.arange(num_envs) < episodes % num_envs)
    venv = make_vector_env(
        env_id, num_envs, seed=seed, grayscale=spec.obs_shape[0] == 1, sticky_actions=sticky_actions
    )
    try:
        frames, _ = venv.reset(seed=seed)
        is_first = np.ones(num_envs, dtype=bool)
        ended = np.zeros(num_envs, dtype=bool)
        running = np.zeros(num_envs)
        returns: list[list[float]] = [[] for _ in range(num_envs)]
        while any(len(r) < q for r, q in zip(returns, quota, strict=True)):
            actions = agent.act(frames, is_first)
            frames, rewards, terminated, truncated, _ = venv.step(actions)
            # Next-step autoreset: the step after an episode ends returns a first frame (reward 0).
            is_first = ended
            running += rewards
            ended = terminated | truncated
            for i in np.flatnonzero(ended):
                if len(returns[i]) < quota[i]:
                    returns[i].append(float(running[i]))
                running[i] = 0.0
    finally:
        venv.close()
    return [r for env_returns in returns for r in env_returns]


def agent_loader(saved: dict[str, Any], device: torch.device, greedy: bool):
    """A function snapshot checkpoint -> deployed agent; the world model is loaded once, here."""
    config = config_from_json(saved["agent"])
    spec = EnvSpec.from_json(saved["env"])
    method = get_method(config.algo)
    if method.world_model:
        model = load_agent_world_model(saved["world_model"], saved, str(device)).model
        policy = method.algorithm.deployed_policy(config, spec, model.feature_dim).to(device)
        agent = LatentAgent(model, policy.eval(), greedy)
    else:
        policy = method.algorithm.deployed_policy(config, spec).to(device).eval()
        agent = PixelAgent(policy, spec.action, greedy)

    def load(checkpoint: Checkpoint):
        checkpoint.restore("policy", policy)
        agent.reset()
        return agent

    return load


def random_return(
    env_id: str, spec: EnvSpec, episodes: int, num_envs: int, seed: int, sticky_actions: bool
) -> float:
    agent = RandomAgent(spec.action, seed)
    return float(
        np.mean(run_episodes(agent, env_id, spec, episodes, num_envs, seed, sticky_actions))
    )


def _scored_run(run: Path, sticky_actions: bool) -> tuple[dict[str, Any], AgentConfig, EnvSpec]:
    """The run's saved config, its agent config and its env, checked against the env as
    ditto makes it now."""
    saved = read_config(run, "agent")
    config = config_from_json(saved["agent"])
    spec = EnvSpec.from_json(saved["env"])
    env_spec(
        spec.env_id, size=spec.obs_shape[1], grayscale=spec.obs_shape[0] == 1
    ).check_compatible(spec, f"run {run}")
    if sticky_actions:
        check_sticky_actions(spec.env_id)
    return saved, config, spec


def evaluate_run(
    run: str | os.PathLike,
    *,
    episodes: int | None = None,
    checkpoints: int | None = None,
    greedy: bool | None = None,
    num_envs: int | None = None,
    sticky_actions: bool = False,
    device: str = "auto",
    seed: int = 1_000_000,
    progress: bool = True,
) -> dict[str, Any]:
    """Score a run under the protocol: its last `checkpoints` snapshots x `episodes` episodes each.

    sticky_actions (Atari and MinAtar): the env repeats the previous action with probability
    0.25 (Atari, Machado et al. 2018) or 0.1 (MinAtar's standard), so no memorised action
    sequence replays a recorded game. The normalised score still uses the expert's recorded
    (sticky-free) return.
    """
    run = Path(run)
    for flag, value in (
        ("--checkpoints", checkpoints),
        ("--episodes", episodes),
        ("--num-envs", num_envs),
    ):
        if value is not None and value < 1:
            raise DittoError(f"{flag} must be >= 1, got {value}")
    saved, config, spec = _scored_run(run, sticky_actions)
    protocol = resolve_protocol(
        config,
        checkpoints=checkpoints,
        episodes=episodes,
        greedy=greedy,
        sticky_actions=sticky_actions,
    )
    episodes, greedy = protocol["episodes"], protocol["greedy"]
    num_envs = config.eval_envs if num_envs is None else num_envs
    snapshots = policy_snapshots(run)[-protocol["checkpoints"] :]
    load = agent_loader(saved, resolve_device(device), greedy)
    snapshots = tqdm(snapshots, desc=f"evaluate {run.name}", unit="ckpt", disable=not progress)
    per_checkpoint, returns = _play_snapshots(
        snapshots, load, spec, episodes, num_envs, seed, sticky_actions
    )
    expert, rand = (
        saved["expert_return"],
        random_return(spec.env_id, spec, episodes, num_envs, seed, sticky_actions),
    )
    return {
        "run": str(run),
        "algo": config.algo,
        "env_id": spec.env_id,
        "expert_episodes": config.expert_episodes,
        "seed": config.seed,
        "return_mean": float(returns.mean()),
        "return_stderr": standard_error(returns),
        "normalized_score": normalized_score(float(returns.mean()), expert, rand),
        "expert_return": expert,
        "random_return": rand,
        "episodes": len(returns),
        "returns": returns.tolist(),
        "checkpoints": per_checkpoint,
        "greedy": greedy,
        "protocol": protocol,
        "num_envs": num_envs,  # with the seed, which episodes were played
    }


def _play_snapshots(
    snapshots, load, spec: EnvSpec, episodes: int, num_envs: int, seed: int, sticky_actions: bool
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Each snapshot's step and mean return, and all the returns: snapshot i plays its episodes
    from seed + 1000 i, its sampling seeded with seed + i."""
    per_checkpoint, all_returns = [], []
    for index, snapshot in enumerate(snapshots):
        torch.manual_seed(seed + index)  # the policy samples actions and latents
        checkpoint = load_checkpoint(snapshot)
        returns = run_episodes(
            load(checkpoint),
            spec.env_id,
            spec,
            episodes,
            num_envs,
            seed + 1000 * index,
            sticky_actions,
        )
        per_checkpoint.append(
            {"step": int(checkpoint.meta["step"]), "return_mean": float(np.mean(returns))}
        )
        all_returns += returns
    return per_checkpoint, np.asarray(all_returns)


def resolve_protocol(
    config: AgentConfig,
    *,
    checkpoints: int | None,
    episodes: int | None,
    greedy: bool | None,
    sticky_actions: bool = False,
) -> dict[str, Any]:
    """The evaluation settings, the run's own config filling in what is not given."""
    return {
        "checkpoints": config.keep_checkpoints if checkpoints is None else checkpoints,
        "episodes": config.eval_episodes if episodes is None else episodes,
        "greedy": config.greedy if greedy is None else greedy,
        "sticky_actions": sticky_actions,
    }


def policy_snapshots(run: Path) -> list[Path]:
    """The run's policy snapshots, oldest first (what evaluation scores)."""
    snapshots = sorted((run / SNAPSHOTS).glob("step_*.safetensors"))
    if not snapshots:
        raise DittoError(f"{run}: no policy snapshots in {run / SNAPSHOTS}; train the run first")
    return snapshots


def standard_error(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def normalized_score(agent: float, expert: float, random: float) -> float:
    """(agent - random) / (expert - random): 0 is random play, 1 is the expert."""
    if abs(expert - random) < 1e-8:
        return float("nan")
    return (agent - random) / (expert - random)


def recorded_protocol(result: dict[str, Any]) -> dict[str, Any]:
    """The protocol an eval.json was scored under; scores saved before sticky actions were an
    option were made without them."""
    return {"sticky_actions": False, **result.get("protocol", {})}


def setting_of(result: dict[str, Any]) -> tuple[str, str, int]:
    """What the runs that one IQM aggregates share: their seeds are what differs."""
    return result["env_id"], result["algo"], result["expert_episodes"]


def aggregate(results: list[dict[str, Any]], reps: int = 2000) -> dict[str, Any]:
    """IQM of the normalised scores across runs (seeds), with a 95% stratified-bootstrap interval."""
    from rliable import library as rly
    from rliable import metrics

    scores = np.array([[r["normalized_score"]] for r in results])  # (runs, tasks=1)
    if len(results) == 1:  # no interval from one run
        point, interval = {"agent": scores[0]}, {"agent": np.array([scores[0], scores[0]])}
    else:
        with (
            warnings.catch_warnings()
        ):  # rliable hands random_state on to arch, which deprecates it
            warnings.simplefilter("ignore", FutureWarning)
            point, interval = rly.get_interval_estimates(
                {"agent": scores},
                lambda x: np.array([metrics.aggregate_iqm(x)]),
                reps=reps,
                random_state=np.random.RandomState(0),  # the same interval every time
            )
    return {
        "runs": len(results),
        "iqm_normalized_score": float(point["agent"][0]),
        "iqm_ci95": [float(interval["agent"][0, 0]), float(interval["agent"][1, 0])],
        "return_mean": float(np.mean([r["return_mean"] for r in results])),
        "normalized_score_mean": float(np.mean([r["normalized_score"] for r in results])),
    }
