"""The latent probe: does a world model's latent hold the game state that the frame shows?

    report = latent_probe("runs/minatar/breakout/wm", "scripted", episodes=20)
    print(format_probe(report))

It records fresh episodes with an expert, keeping beside each frame the env's own
state (MinAtar: the object grid; Atari: the console RAM; other envs: the state
vector). Every frame is filtered through the world model's posterior, exactly as
an agent sees it. A ridge regression from the features to each state quantity
is fitted on some episodes and scored on the others by R^2 (1: the latent
determines it linearly; 0: no better than the held-out mean). The same
regression from the frame's own pixels (2x2-averaged) is reported beside it as a
reference: a
quantity the latent gets wrong but the frame gets right was lost by the model,
and one that neither gets (a velocity, say) needs memory of earlier frames,
which only the recurrent latent has.

Quantities are named groups of state entries, scored together (the R^2 of a
group pools its entries' errors): for MinAtar one per object channel (its
10x10 occupancy), for Pong and Breakout the RAM bytes of the ball and paddles,
for CartPole and Pendulum each state variable.

R^2 undersells a one-block object (a ball): a linear map onto 100 one-hot cells
fits its rare ones poorly, even from the frame. So for a MinAtar channel that
mostly holds one block, `located` is also reported: the share of held-out frames
in which the cell the regression rates highest is the block's own (chance: 1%).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ditto.agents.expert_data import encode_episode
from ditto.data.episode import Episode
from ditto.envs import is_atari, is_minatar, make_env
from ditto.errors import DittoError
from ditto.experts import make_expert
from ditto.world_model.trainer import load_world_model

# RAM bytes of the objects (Atari Annotated RAM Interface, Anand et al. 2019).
ATARI_RAM = {
    "ALE/Pong-v5": {"ball_x": [49], "ball_y": [54], "player_y": [51], "enemy_y": [50]},
    "ALE/Breakout-v5": {"ball_x": [99], "ball_y": [101], "paddle_x": [72]},
}
STATE_NAMES = {
    "CartPole-v1": ["cart_x", "cart_velocity", "pole_angle", "pole_velocity"],
    "Pendulum-v1": ["cos_angle", "sin_angle", "angular_velocity"],
}


def quantities(env: Any, env_id: str) -> dict[str, list[int]]:
    """Named groups of indices into env_state(env, env_id)."""
    if is_minatar(env_id):
        game = env.unwrapped.game.env
        cells = np.arange(100 * len(game.channels)).reshape(10, 10, -1)
        return {name: cells[..., c].ravel().tolist() for name, c in game.channels.items()}
    if is_atari(env_id):
        known = ATARI_RAM.get(env_id)
        return dict(known) if known else {f"ram_{i}": [i] for i in range(128)}
    size = np.size(env.get_wrapper_attr("state"))
    names = STATE_NAMES.get(env_id, [f"state_{i}" for i in range(size)])
    return {name: [i] for i, name in enumerate(names)}


def env_state(env: Any, env_id: str) -> np.ndarray:
    if is_atari(env_id):
        return env.unwrapped.ale.getRAM().astype(np.float32)
    return np.asarray(env.get_wrapper_attr("state"), dtype=np.float32).ravel()


def record(env_id: str, expert_spec: str, episodes: int, seed: int, epsilon: float):
    """Episodes of the expert with the env's state at every frame: [(Episode, (T+1, D))]."""
    expert = make_expert(expert_spec, env_id, epsilon=epsilon, seed=seed)
    env = make_env(env_id, keep_screen=expert.keep_screen)
    discrete = env.get_wrapper_attr("ditto_spec").action.is_discrete
    recorded = []
    for index in tqdm(range(episodes), desc="probe episodes", leave=False):
        frame, _ = env.reset(seed=seed + index)
        expert.reset(env)
        frames, states, actions, done = [frame], [env_state(env, env_id)], [], False
        while not done:
            action = expert.act(env, frame)
            frame, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            frames.append(frame)
            states.append(env_state(env, env_id))
            actions.append(action)
        episode = Episode(
            observations=np.stack(frames),
            actions=np.asarray(actions, dtype=np.int64 if discrete else np.float32),
            rewards=np.zeros(len(actions), np.float32),
            terminated=bool(terminated),
            truncated=bool(truncated),
        )
        recorded.append((episode, np.stack(states)))
    return recorded, quantities(env, env_id)


ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # ridge strengths tried, relative to unit-variance inputs


class _Ridge:
    """Ridge regressions of y on standardised x for many strengths at the cost of one."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        # An input constant on the fit data (a class of z never drawn) is left out: scaled
        # by its zero spread, any value it takes on new data would swamp the prediction.
        spread = x.std(0)
        self.mean, self.scale = x.mean(0), np.where(spread > 1e-6, spread, np.inf)
        self.y_mean = y.mean(0)
        a = (x - self.mean) / self.scale
        self.eigvals, self.basis = np.linalg.eigh(a.T @ a / len(a))
        self.projected = self.basis.T @ (a.T @ (y - self.y_mean) / len(a))

    def predict(self, x: np.ndarray, alpha: float) -> np.ndarray:
        weights = self.basis @ (self.projected / (self.eigvals + alpha)[:, None])
        return ((x - self.mean) / self.scale) @ weights + self.y_mean


def _group_sse(error: np.ndarray, groups: dict[str, list[int]]) -> dict[str, float]:
    return {name: float(np.sum(error[:, columns] ** 2)) for name, columns in groups.items()}


def ridge_predict(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, groups: dict[str, list[int]]
) -> np.ndarray:
    """Predictions of every target column on test_x from ridge regressions on train_x.

    Each group's ridge strength is chosen from ALPHAS on the last fifth of the training
    rows (later episodes), then the fit is redone on all of them.
    """
    cut = len(train_x) * 4 // 5
    inner = _Ridge(train_x[:cut], train_y[:cut])
    validation = {
        alpha: _group_sse(inner.predict(train_x[cut:], alpha) - train_y[cut:], groups)
        for alpha in ALPHAS
    }
    ridge = _Ridge(train_x, train_y)
    predictions = {alpha: ridge.predict(test_x, alpha) for alpha in ALPHAS}
    out = np.zeros((len(test_x), train_y.shape[1]))
    for name, columns in groups.items():
        best = min(ALPHAS, key=lambda alpha: validation[alpha][name])
        out[:, columns] = predictions[best][:, columns]
    return out


def r2_scores(
    predicted: np.ndarray, test_y: np.ndarray, groups: dict[str, list[int]]
) -> dict[str, float]:
    """R^2 of each group; NaN for a group whose targets do not vary on the held-out data."""
    error = _group_sse(predicted - test_y, groups)
    spread = _group_sse(test_y - test_y.mean(0), groups)
    return {
        name: 1.0 - error[name] / spread[name] if spread[name] > 0 else float("nan")
        for name in groups
    }


def ridge_r2(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    groups: dict[str, list[int]],
) -> dict[str, float]:
    """Held-out R^2 of each group of target columns from a ridge regression on train_x."""
    return r2_scores(ridge_predict(train_x, train_y, test_x, groups), test_y, groups)


def located(
    predicted: np.ndarray, test_y: np.ndarray, groups: dict[str, list[int]]
) -> dict[str, float]:
    """For each group of one-hot cells that mostly holds one block: the share of the frames
    holding exactly one in which the highest predicted cell is that block's."""
    scores = {}
    for name, columns in groups.items():
        cells = test_y[:, columns]
        single = cells.sum(1) == 1
        if len(columns) < 2 or single.mean() < 0.5 or not np.isin(cells, (0, 1)).all():
            continue
        hits = predicted[single][:, columns].argmax(1) == cells[single].argmax(1)
        scores[name] = float(hits.mean())
    return scores


def _pixels(frames: np.ndarray) -> np.ndarray:
    """(T, C, H, W) uint8 frames as (T, C H W / 4) floats: 2x2-averaged, so the frame's
    regression stays cheap; objects of a few pixels still register."""
    t, c, h, w = frames.shape
    pooled = frames.reshape(t, c, h // 2, 2, w // 2, 2).astype(np.float32).mean(axis=(3, 5))
    return pooled.reshape(t, -1) / 255.0


def latent_probe(
    world_model: str | os.PathLike,
    expert: str = "scripted",
    *,
    episodes: int = 20,
    epsilon: float = 0.1,
    held_out: float = 0.3,
    seed: int = 500_000,
    device: str = "cpu",
) -> dict[str, Any]:
    """Held-out R^2 of every state quantity from the world model's latent and from the frame.

    epsilon: random actions mixed into the expert, so the probe sees states off its path.
    """
    if episodes < 2:
        raise DittoError(f"--episodes must be >= 2 (some to fit on, some to score), got {episodes}")
    if not 0.0 < held_out < 1.0:
        raise DittoError(f"held_out must be in (0, 1), got {held_out}")
    run = load_world_model(world_model, device)
    env_id = run.model.spec.env_id
    recorded, groups = record(env_id, expert, episodes, seed, epsilon)
    test_count = max(1, round(held_out * episodes))
    parts: dict[str, list[list[np.ndarray]]] = {"latent": [[], []], "frame": [[], []]}
    states: list[list[np.ndarray]] = [[], []]
    for index, (episode, state) in enumerate(recorded):
        side = int(index >= episodes - test_count)  # the last episodes are held out
        features = encode_episode(run.model, episode, next(run.model.parameters()).device)
        parts["latent"][side].append(features.cpu().numpy())
        parts["frame"][side].append(_pixels(episode.observations))
        states[side].append(state)
    train_y, test_y = np.concatenate(states[0]), np.concatenate(states[1])
    predicted = {
        source: ridge_predict(np.concatenate(train), train_y, np.concatenate(test), groups)
        for source, (train, test) in parts.items()
    }
    scores = {source: r2_scores(p, test_y, groups) for source, p in predicted.items()}
    found = {source: located(p, test_y, groups) for source, p in predicted.items()}
    return {
        "world_model": str(world_model),
        "world_model_step": run.step,
        "env_id": env_id,
        "expert": expert,
        "epsilon": epsilon,
        "episodes": {"fit": episodes - test_count, "held_out": test_count},
        "frames": {"fit": len(train_y), "held_out": len(test_y)},
        "r2": {name: {s: scores[s][name] for s in scores} for name in groups},
        "located": {
            name: {s: found[s][name] for s in found} for name in groups if name in found["frame"]
        },
    }


def format_probe(report: dict[str, Any]) -> str:
    lines = [
        f"latent probe of {report['world_model']} (step {report['world_model_step']}) on "
        f"{report['env_id']}: {report['episodes']['held_out']} held-out episodes "
        f"({report['frames']['held_out']} frames), ridge fit on {report['episodes']['fit']}",
        f"{'quantity':<20} {'R2 latent':>10} {'R2 frame':>10} {'located':>16}",
    ]
    for name, r2 in report["r2"].items():
        where = report.get("located", {}).get(name)
        shown = f"{where['latent']:>7.2f} {where['frame']:>8.2f}" if where else ""
        lines.append(f"{name:<20} {r2['latent']:>10.3f} {r2['frame']:>10.3f} {shown}")
    if report.get("located"):
        lines.append(
            "located: latent, frame (share of frames whose one block is found; chance 0.01)"
        )
    return "\n".join(lines)
