"""Honest evaluation in the real environment, under the paper's protocol (after Agarwal et al. 2021).

The score of a run is the mean return over its last 10 policy snapshots x 20
episodes each, with the standard error of those returns. The expert-normalised
score is (agent - random) / (expert - random), with the random policy's return
measured on the same env and the expert's taken from the expert dataset. Across
runs (seeds), the IQM of normalised scores with a bootstrap confidence interval
comes from the rliable library. Evaluation only reads the run directory.

A goal-conditioned run (lumos, lumos-dbc) is scored on the same snapshots, each episode
toward the env's own mission (BabyAI's sentence) given to the policy: its success rate,
overall, per mission type and on missions seen or unseen in its training annotations, and
with `chain` K, CALVIN's measure: up to K missions in a row in one room, the next given
once one is done (the average number completed). Its normalised score is the success rate's,
0 for random actions and 1 for every mission done. The other methods' path is unchanged.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
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
from ditto.evaluation.policy import GoalAgent, LatentAgent, PixelAgent, RandomAgent
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
        if goal_conditioned(config):
            agent = GoalAgent(agent)
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
    missions: str = "all",
    chain: int = 1,
) -> dict[str, Any]:
    """Score a run under the protocol: its last `checkpoints` snapshots x `episodes` episodes each.

    sticky_actions (Atari and MinAtar): the env repeats the previous action with probability
    0.25 (Atari, Machado et al. 2018) or 0.1 (MinAtar's standard), so no memorised action
    sequence replays a recorded game. The normalised score still uses the expert's recorded
    (sticky-free) return.

    Goal-conditioned runs only (`_score_missions`): missions "unseen" plays only episodes
    whose mission no training annotation has; chain K gives up to K missions an episode.
    """
    run = Path(run)
    for flag, value in (
        ("--checkpoints", checkpoints),
        ("--episodes", episodes),
        ("--num-envs", num_envs),
        ("--chain", chain),
    ):
        if value is not None and value < 1:
            raise DittoError(f"{flag} must be >= 1, got {value}")
    if missions not in MISSION_SETS:
        raise DittoError(f"--missions is one of {', '.join(MISSION_SETS)}, got {missions!r}")
    saved, config, spec = _scored_run(run, sticky_actions)
    goals = goal_conditioned(config)
    if not goals and (missions != "all" or chain != 1):
        raise DittoError(
            f"--missions and --chain score goal-conditioned runs (lumos, lumos-dbc); "
            f"{config.algo} is given no goal"
        )
    protocol = resolve_protocol(
        config,
        checkpoints=checkpoints,
        episodes=episodes,
        greedy=greedy,
        sticky_actions=sticky_actions,
        missions=missions,
        chain=chain,
    )
    episodes, greedy = protocol["episodes"], protocol["greedy"]
    num_envs = config.eval_envs if num_envs is None else num_envs
    snapshots = policy_snapshots(run)[-protocol["checkpoints"] :]
    load = agent_loader(saved, resolve_device(device), greedy)
    snapshots = tqdm(snapshots, desc=f"evaluate {run.name}", unit="ckpt", disable=not progress)
    result = {
        "run": str(run),
        "algo": config.algo,
        "env_id": spec.env_id,
        "expert_episodes": config.expert_episodes,
        "seed": config.seed,
    }
    if goals:
        plan = MissionPlan(spec, episodes, num_envs, seed, missions, chain)
        result.update(_score_missions(saved, config, snapshots, load, plan))
    else:
        result.update(
            _score_returns(saved, snapshots, load, spec, episodes, num_envs, seed, sticky_actions)
        )
    return {
        **result,
        "greedy": greedy,
        "protocol": protocol,
        "num_envs": num_envs,  # with the seed, which episodes were played
    }


def _score_returns(
    saved, snapshots, load, spec: EnvSpec, episodes, num_envs, seed, sticky_actions
) -> dict[str, Any]:
    """The returns' scores of a run that is given no goal (every method but lumos)."""
    per_checkpoint, returns = _play_snapshots(
        snapshots, load, spec, episodes, num_envs, seed, sticky_actions
    )
    expert, rand = (
        saved["expert_return"],
        random_return(spec.env_id, spec, episodes, num_envs, seed, sticky_actions),
    )
    return {
        "return_mean": float(returns.mean()),
        "return_stderr": standard_error(returns),
        "normalized_score": normalized_score(float(returns.mean()), expert, rand),
        "expert_return": expert,
        "random_return": rand,
        "episodes": len(returns),
        "returns": returns.tolist(),
        "checkpoints": per_checkpoint,
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


# ----- goal-conditioned runs: each episode toward the env's own mission -------------------------
MISSION_SETS = ("all", "unseen")  # --missions: every episode, or those no annotation trained on


def goal_conditioned(config: AgentConfig) -> bool:
    """Whether the run's policy acts toward a goal that evaluation gives it (lumos)."""
    return getattr(get_method(config.algo).algorithm, "goal_conditioned", False)


@dataclass(frozen=True)
class MissionPlan:
    """What a goal-conditioned run's evaluation plays (evaluate_run's settings)."""

    spec: EnvSpec
    episodes: int  # per snapshot
    num_envs: int
    seed: int
    missions: str = "all"  # MISSION_SETS
    chain: int = 1  # missions an episode, at most (the next given once one is done)

    def seeds(self, index: int, seen: set[str] | None) -> list[int]:
        """Snapshot `index`'s episodes' reset seeds, from seed + 1000 index as the other
        methods' are; "unseen": the first whose mission is not in `seen`."""
        start = self.seed + 1000 * index
        if self.missions == "all":
            return list(range(start, start + self.episodes))
        from ditto.envs.babyai import unseen_mission_seeds

        assert seen is not None  # _score_missions refuses "unseen" without the training data
        return unseen_mission_seeds(self.spec.env_id, start, self.episodes, seen)


class _Slot:
    """One env of run_missions, the episode it plays and the seeds it has left."""

    def __init__(self, env_id: str, seeds: list[int]):
        from ditto.envs import make_env

        self.env_id, self.env, self.seeds = env_id, make_env(env_id), list(seeds)
        self.episode: dict[str, Any] | None = None
        self.mission = ""

    def start(self) -> np.ndarray | None:
        """The next episode's first frame, or None (and no episode) when none is left."""
        self.episode = None
        if not self.seeds:
            return None
        seed = self.seeds.pop(0)
        frame, info = self.env.reset(seed=seed)
        if "mission" not in info:
            raise DittoError(
                f"{self.env_id} gives no mission: a goal-conditioned run is "
                "scored in an env that has them (BabyAI)"
            )
        self.mission = info["mission"]
        self.episode = {"seed": seed, "return": 0.0, "missions": [[self.mission, False]]}
        return frame

    def next_mission(self) -> None:
        """A chain's next mission on the room as it is: the play data's generator."""
        self.mission = self.env.unwrapped.new_mission()
        self.episode["missions"].append([self.mission, False])


def run_missions(agent, env_id: str, seeds: list[int], num_envs: int, chain: int = 1) -> list:
    """One episode per reset seed in `num_envs` envs stepped together, each toward its env's
    mission (given to an agent that takes them: `set_missions`). When a mission is done and
    fewer than `chain` were given, the next is drawn on the same room; the episode ends at a
    mission failed or out of its step budget, or the chain's last done. Per episode, in the
    seeds' order: {"seed", "return", "missions": [[sentence, done], ...]}."""
    from ditto.envs.babyai import mission_done

    count = max(1, min(num_envs, len(seeds)))
    slots = [_Slot(env_id, seeds[i::count]) for i in range(count)]
    played = []
    try:
        frames = [slot.start() for slot in slots]
        is_first = np.ones(count, dtype=bool)
        while any(slot.episode is not None for slot in slots):
            if hasattr(agent, "set_missions"):  # an env done with its seeds keeps its last
                agent.set_missions([slot.mission for slot in slots])
            actions = agent.act(np.stack(frames), is_first)
            is_first[:] = False
            for i, slot in enumerate(slots):
                if slot.episode is None:  # its frame stands still until the others finish
                    continue
                frames[i], reward, terminated, truncated, _ = slot.env.step(actions[i])
                slot.episode["return"] += float(reward)
                if not (terminated or truncated):
                    continue
                done = mission_done(terminated, reward)
                slot.episode["missions"][-1][1] = done
                if done and len(slot.episode["missions"]) < chain:
                    slot.next_mission()
                    continue
                played.append(slot.episode)
                frame = slot.start()
                if frame is not None:
                    frames[i], is_first[i] = frame, True
    finally:
        for slot in slots:
            slot.env.close()
    order = {seed: k for k, seed in enumerate(seeds)}
    return sorted(played, key=lambda episode: order[episode["seed"]])


def _rate(outcomes: list[bool]) -> dict[str, Any]:
    return {
        "success_rate": float(np.mean(outcomes)) if outcomes else None,
        "missions": len(outcomes),
    }


def mission_scores(episodes: list[dict], chain: int, seen: set[str] | None) -> dict[str, Any]:
    """The success over the missions given (a chain's failed last one included): overall,
    per mission type, and on `seen` / unseen missions; the chains: the mean number of
    missions done (0..chain) and the share of episodes that did at least 1, 2, .. chain."""
    from ditto.envs.babyai import mission_type

    given = [(mission, done) for e in episodes for mission, done in e["missions"]]
    by_type: dict[str, list[bool]] = {}
    for mission, done in given:
        by_type.setdefault(mission_type(mission), []).append(done)
    completed = np.array([sum(done for _, done in e["missions"]) for e in episodes])
    scores = {
        **_rate([done for _, done in given]),
        "by_type": {kind: _rate(outcomes) for kind, outcomes in sorted(by_type.items())},
    }
    if seen is not None:
        scores["seen"] = _rate([done for mission, done in given if mission in seen])
        scores["unseen"] = _rate([done for mission, done in given if mission not in seen])
    scores["chain"] = {
        "length": chain,
        "completed_mean": float(completed.mean()),
        "reached": [float((completed >= k).mean()) for k in range(1, chain + 1)],
    }
    return scores


def training_missions(saved: dict[str, Any], config: AgentConfig) -> set[str] | None:
    """The sentences of the annotated segments the run trained on (its expert data's episodes
    as split_expert_episodes gives them to training), or None where that data is gone."""
    from ditto.agents.trainer import split_expert_episodes
    from ditto.data import Dataset

    path = saved.get("expert_data")
    if path is None or not Path(path).is_dir():
        return None
    train, _, _ = split_expert_episodes(Dataset(path), config.expert_episodes, config.val_fraction)
    return {s.mission for e in train for s in e.segments or () if s.mission is not None}


def _score_missions(
    saved: dict[str, Any], config: AgentConfig, snapshots, load, plan: MissionPlan
) -> dict[str, Any]:
    """A goal-conditioned run's scores (see the module's doc), the keys of the other methods'
    first, with the success rate's normalised score, then the missions' own."""
    seen = training_missions(saved, config)
    if seen is None and plan.missions == "unseen":
        raise DittoError(
            f"--missions unseen needs the run's training data, {saved.get('expert_data')}, "
            "which is not there: its annotations say which missions were seen"
        )
    per_checkpoint, played = [], []
    for index, snapshot in enumerate(snapshots):
        torch.manual_seed(plan.seed + index)  # the policy samples actions and latents
        checkpoint = load_checkpoint(snapshot)
        agent = load(checkpoint)
        some = run_missions(
            agent, plan.spec.env_id, plan.seeds(index, seen), plan.num_envs, plan.chain
        )
        per_checkpoint.append(
            {
                "step": int(checkpoint.meta["step"]),
                "return_mean": float(np.mean([e["return"] for e in some])),
                "success_rate": mission_scores(some, plan.chain, None)["success_rate"],
            }
        )
        played += some
    rand = RandomAgent(plan.spec.action, plan.seed)
    random_played = run_missions(
        rand, plan.spec.env_id, plan.seeds(0, seen), plan.num_envs, plan.chain
    )
    random_scores = mission_scores(random_played, plan.chain, None)
    returns = np.array([e["return"] for e in played])
    scores = mission_scores(played, plan.chain, seen)
    sentences = {mission for e in played for mission, _ in e["missions"]}
    return {
        "return_mean": float(returns.mean()),
        "return_stderr": standard_error(returns),
        "normalized_score": normalized_score(
            scores["success_rate"], 1.0, random_scores["success_rate"]
        ),
        "expert_return": saved["expert_return"],  # the play data's: not comparable
        "random_return": float(np.mean([e["return"] for e in random_played])),
        "episodes": len(returns),
        "returns": returns.tolist(),
        "checkpoints": per_checkpoint,
        **scores,
        "random_success_rate": random_scores["success_rate"],
        "random_chain": random_scores["chain"],
        "training_missions": None if seen is None else len(seen),
        "unknown_words": sorted(agent.policy.goals.sentence.vocabulary.unknown(sentences)),
        "played": played,
    }


def resolve_protocol(
    config: AgentConfig,
    *,
    checkpoints: int | None,
    episodes: int | None,
    greedy: bool | None,
    sticky_actions: bool = False,
    missions: str = "all",
    chain: int = 1,
) -> dict[str, Any]:
    """The evaluation settings, the run's own config filling in what is not given; a
    goal-conditioned run's also say which missions and how many in a row (so that a grid
    asking for the defaults finds its saved score)."""
    protocol = {
        "checkpoints": config.keep_checkpoints if checkpoints is None else checkpoints,
        "episodes": config.eval_episodes if episodes is None else episodes,
        "greedy": config.greedy if greedy is None else greedy,
        "sticky_actions": sticky_actions,
    }
    if goal_conditioned(config):
        protocol.update(missions=missions, chain=chain)
    return protocol


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
