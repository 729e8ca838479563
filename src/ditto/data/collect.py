"""Recording episodes of an expert in a pixel env, into a dataset or just for their returns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from ditto.data.dataset import Dataset, DatasetWriter
from ditto.data.episode import Episode
from ditto.envs import check_sticky_actions, env_spec, make_env, make_vector_env
from ditto.errors import DatasetError, DittoError
from ditto.experts import PLAY_EXPERT, Expert, make_expert
from ditto.experts.babyai import PLAY_ANNOTATE, PLAY_STEPS
from ditto.io import writer_lock


def run_episodes(env: gym.Env, expert: Expert, seeds: list[int]) -> Iterator[Episode]:
    """One episode per seed, each begun with env.reset(seed=seed)."""
    discrete = env.get_wrapper_attr("ditto_spec").action.is_discrete
    for seed in seeds:
        frame, _ = env.reset(seed=seed)
        expert.reset(env)
        frames, actions, rewards = [frame], [], []
        terminated = truncated = False
        while not (terminated or truncated):
            action = expert.act(env, frame)
            frame, reward, terminated, truncated, _ = env.step(action)
            frames.append(frame)
            actions.append(action)
            rewards.append(reward)
        yield _episode(frames, actions, rewards, terminated, truncated, discrete)


def run_vector_episodes(
    venv: gym.vector.VectorEnv, expert: Expert, count: int
) -> Iterator[Episode]:
    """`count` episodes from a next-step-autoreset vector env, in the order they finish.

    The expert must act on frames alone (expert.reads_env is False).
    """
    discrete = venv.ditto_spec.action.is_discrete
    frames, _ = venv.reset()
    buffers = [([f], [], []) for f in frames]
    finished = 0
    ended = np.zeros(venv.num_envs, dtype=bool)
    while finished < count:
        actions = [expert.act(None, f) for f in frames]
        batch = np.asarray(actions)
        frames, rewards, terminated, truncated, _ = venv.step(batch)
        for i in range(venv.num_envs):
            if ended[i]:  # this step was the autoreset: frames[i] begins a new episode
                buffers[i] = ([frames[i]], [], [])
                continue
            obs, acts, rews = buffers[i]
            obs.append(frames[i])
            acts.append(actions[i])
            rews.append(rewards[i])
            if (terminated[i] or truncated[i]) and finished < count:
                finished += 1
                yield _episode(obs, acts, rews, bool(terminated[i]), bool(truncated[i]), discrete)
        ended = terminated | truncated


def _episode(frames, actions, rewards, terminated, truncated, discrete) -> Episode:
    return Episode(
        observations=np.stack(frames).astype(np.uint8, copy=False),
        actions=np.asarray(actions, dtype=np.int64 if discrete else np.float32),
        rewards=np.asarray(rewards, dtype=np.float32),
        terminated=bool(terminated),
        truncated=bool(truncated),
    )


def _episode_source(
    env_id: str,
    expert: Expert,
    seed: int,
    num_envs: int,
    size: int,
    grayscale: bool,
    sticky_actions: bool = False,
) -> Iterator[Episode]:
    """Episodes of the expert, forever: vectorised when the expert needs only frames."""
    if num_envs > 1 and not expert.reads_env:
        venv = make_vector_env(
            env_id,
            num_envs,
            seed=seed,
            size=size,
            grayscale=grayscale,
            sticky_actions=sticky_actions,
        )
        try:
            yield from run_vector_episodes(venv, expert, count=2**62)
        finally:
            venv.close()
    else:
        env = make_env(
            env_id,
            size=size,
            grayscale=grayscale,
            keep_screen=expert.keep_screen,
            sticky_actions=sticky_actions,
        )
        try:
            index = 0
            while True:
                yield from run_episodes(env, expert, [seed + index])
                index += 1
        finally:
            env.close()


def collect(
    env_id: str,
    expert_spec: str,
    episodes: int,
    out: str | Path,
    *,
    epsilon: float = 0.0,
    seed: int = 0,
    num_envs: int = 8,
    size: int = 64,
    grayscale: bool = True,
    progress: bool = True,
    trust_pickle: bool = False,
    annotate: float | None = None,
    play_steps: int | None = None,
) -> Dataset:
    """Record `episodes` episodes of the expert into the dataset at `out`.

    Episode i starts from env seed `seed + i`. If `out` already holds episodes
    of the same env, expert, epsilon and seed (an interrupted collection), only
    the missing ones are recorded. Experts that act on frames alone (random)
    run in `num_envs` vectorised envs. `trust_pickle`: see `make_expert`.
    Expert `babyai-play` records play data instead (`collect_play`; annotate and
    play_steps are its settings).
    """
    if expert_spec == PLAY_EXPERT:
        return collect_play(
            env_id,
            episodes,
            out,
            epsilon=epsilon,
            seed=seed,
            annotate=PLAY_ANNOTATE if annotate is None else annotate,
            steps=PLAY_STEPS if play_steps is None else play_steps,
            progress=progress,
        )
    if annotate is not None or play_steps is not None:
        raise DittoError(f"--annotate and --play-steps are settings of --expert {PLAY_EXPERT}")
    _check_counts(episodes=episodes, num_envs=num_envs)
    spec = env_spec(env_id, size=size, grayscale=grayscale)
    expert = make_expert(  # fail before writing
        expert_spec, env_id, epsilon=epsilon, seed=seed, trust_pickle=trust_pickle
    )
    source: dict[str, Any] = {"expert": expert_spec, "epsilon": epsilon, "seed": seed}
    with writer_lock(out):  # a second collection into `out` meanwhile is refused
        writer = _open_writer(out, spec, source)
        done = writer.num_episodes
        if done >= episodes:
            return Dataset(out)
        if done:  # resuming: new seeds, so that new episodes do not replay the finished ones
            expert = make_expert(
                expert_spec, env_id, epsilon=epsilon, seed=seed + done, trust_pickle=trust_pickle
            )
        source_iter = _episode_source(env_id, expert, seed + done, num_envs, size, grayscale)
        bar = tqdm(
            total=episodes, initial=done, desc=f"collect {env_id}", unit="ep", disable=not progress
        )
        try:
            for episode in source_iter:
                info = writer.add(episode)
                bar.update(1)
                bar.set_postfix(ret=f"{info.total_return:.1f}", len=info.length)
                if writer.num_episodes >= episodes:
                    break
        finally:
            source_iter.close()
            bar.close()
        return Dataset(out)


def _open_writer(out: str | Path, spec, source: dict[str, Any]) -> DatasetWriter:
    """The writer for `out`, refused if `out` holds episodes made another way."""
    writer = DatasetWriter(out, spec, source)
    if writer.metadata["source"] != source:
        raise DatasetError(
            f"{out} already holds episodes from {writer.metadata['source']}, not {source}; "
            "write to a new directory"
        )
    return writer


def collect_play(
    env_id: str,
    episodes: int,
    out: str | Path,
    *,
    epsilon: float = 0.0,
    seed: int = 0,
    annotate: float = PLAY_ANNOTATE,
    steps: int = PLAY_STEPS,
    progress: bool = True,
) -> Dataset:
    """Record `episodes` BabyAI play episodes of `steps` steps into the dataset at `out`.

    In each, the bot carries out a stream of random missions on one room, with
    epsilon-random actions; the segments (one per mission) go into the metadata, the
    mission text kept for a fraction `annotate` of the completed ones
    (experts/babyai.py). Episode i is made from seed `seed + i` alone (the room, the
    missions, the noise, which annotations are kept), so an interrupted collection
    resumes to the same dataset.
    """
    from ditto.envs.babyai import is_babyai
    from ditto.experts.babyai import play_episode

    _check_counts(episodes=episodes, play_steps=steps)
    if not 0.0 <= annotate <= 1.0:
        raise DittoError(f"--annotate must be in [0, 1], got {annotate}")
    if not is_babyai(env_id):
        raise DittoError(f"play data is recorded in BabyAI levels only (BabyAI/...), not {env_id}")
    spec = env_spec(env_id, grayscale=False)
    make_expert(PLAY_EXPERT, env_id, epsilon=epsilon, seed=seed)  # fail before writing
    source: dict[str, Any] = {
        "expert": PLAY_EXPERT,
        "epsilon": epsilon,
        "seed": seed,
        "annotate": annotate,
        "play_steps": steps,
    }
    with writer_lock(out):
        writer = _open_writer(out, spec, source)
        env = make_env(env_id, grayscale=False)
        bar = tqdm(
            total=episodes,
            initial=min(writer.num_episodes, episodes),
            desc=f"play {env_id}",
            unit="ep",
            disable=not progress,
        )
        try:
            while writer.num_episodes < episodes:
                index = seed + writer.num_episodes
                expert = make_expert(PLAY_EXPERT, env_id, epsilon=epsilon, seed=index)
                episode = play_episode(env, expert, index, steps, annotate)
                writer.add(episode)
                bar.update(1)
                bar.set_postfix(missions=sum(s.completed for s in episode.segments or ()))
        finally:
            env.close()
            bar.close()
        return Dataset(out)


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if value < 1:
            raise DittoError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def evaluate_expert(
    env_id: str,
    expert_spec: str,
    episodes: int,
    *,
    epsilon: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    trust_pickle: bool = False,
    sticky_actions: bool = False,
) -> list[tuple[float, int]]:
    """(return, length) of `episodes` episodes of the expert; nothing is written to disk.

    sticky_actions (Atari 0.25, MinAtar 0.1): the env sometimes repeats the previous
    action, the paper's evaluation setting, so that a memorised game cannot score.
    """
    _check_counts(episodes=episodes)
    if sticky_actions:
        check_sticky_actions(env_id)
    expert = make_expert(expert_spec, env_id, epsilon=epsilon, seed=seed, trust_pickle=trust_pickle)
    source = _episode_source(
        env_id, expert, seed, num_envs=1, size=64, grayscale=True, sticky_actions=sticky_actions
    )
    results = []
    try:
        for episode in tqdm(
            source, total=episodes, desc=f"eval {env_id}", unit="ep", disable=not progress
        ):
            results.append((episode.total_return, episode.length))
            if len(results) >= episodes:
                break
    finally:
        source.close()
    return results
