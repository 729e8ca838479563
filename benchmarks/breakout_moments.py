"""What does a latent agent do as the MinAtar Breakout ball comes down?

For a trained latent agent run (D-BC, DITTO, D-GAIL), counts its greedy actions by how many
steps the ball is from the paddle's row and whether the paddle is already under a column
that returns it, twice: on the expert's own states (the expert plays, the agent is only
asked) and on the agent's own (the agent plays). A clone that is right on the expert's
states and wrong on its own suffers compounding errors, not a missing skill.

Then it checks the world model's imagination: from states the expert visits, three LEFT
(or NOOP) steps in imagination should put the decoded paddle where the real game puts it.

    python benchmarks/breakout_moments.py runs/minatar/breakout2/agents/dbc-ne15-seed0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ditto.checkpoint import load_checkpoint
from ditto.envs import make_env
from ditto.envs.minatar import BORDER, CELL, GRID
from ditto.evaluation.protocol import agent_loader, policy_snapshots
from ditto.experts.minatar import MinAtarBreakoutExpert, breakout_landing, clone_game
from ditto.runs import read_config

LEFT = 1  # the env's minimal action set: NOOP, LEFT, RIGHT; MinAtar's own index for LEFT is 1


def wanted(game) -> tuple[int, int, int]:
    """(steps until the ball reaches the paddle's row, distance to the nearer returning
    column, the action that closes it)."""
    columns, steps = breakout_landing(game)
    distance = min((column - game.pos for column in columns), key=abs)
    return steps, abs(distance), 0 if distance == 0 else (1 if distance < 0 else 2)


def paddle_column(frame: np.ndarray) -> int:
    """The brightest cell of the bottom row (the paddle is drawn brightest) of a (C, 64, 64)
    frame in any scale."""
    row = frame[:, BORDER + (GRID - 1) * CELL : BORDER + GRID * CELL, BORDER : BORDER + GRID * CELL]
    return int(row.mean((0, 1)).reshape(GRID, CELL).mean(1).argmax())


@torch.no_grad()
def moments(agent, expert_plays: bool, episodes: int, imagine: bool = False):
    """Rows (steps, distance, wanted action, agent's greedy action); with imagine, also
    (imagined paddle, real paddle) pairs for 3 steps of LEFT and of NOOP."""
    model, actor = agent.model, agent.actor
    env = make_env(
        "MinAtar/Breakout-v1", size=model.spec.obs_shape[1], grayscale=model.spec.obs_shape[0] == 1
    )
    expert = MinAtarBreakoutExpert(seed=123)
    rows, paddles = [], {0: [], LEFT: []}
    for episode in range(episodes):
        frame, _ = env.reset(seed=100 + episode)
        expert.reset(env)
        state, previous, first, done, t = model.initial(1), torch.zeros(1, 3), True, False, 0
        while not done:
            game = env.unwrapped.game.env
            state = model.obs_step(
                state,
                model.policy_action_input(previous),
                torch.tensor(frame[None]),
                torch.tensor([first]),
            )
            first = False
            greedy = int(actor(model.features(state)).mode().argmax())
            rows.append((*wanted(game), greedy))
            if imagine and t % 7 == 3:
                for action in paddles:
                    paddles[action].append(imagined_paddle(model, state, game, action))
            action = expert.act(env, frame) if expert_plays else greedy
            previous = torch.nn.functional.one_hot(torch.tensor([action]), 3).float()
            frame, _, terminated, truncated, _ = env.step(action)
            done, t = terminated or truncated, t + 1
    return np.array(rows), paddles


def imagined_paddle(model, state, game, action: int) -> tuple[int, int]:
    one_hot = torch.nn.functional.one_hot(torch.tensor([action]), 3).float()
    for _ in range(3):
        state = model.img_step(state, model.policy_action_input(one_hot))
    simulated = clone_game(game, np.random.RandomState(0))
    for _ in range(3):
        simulated.act(action)  # NOOP and LEFT have the same index in MinAtar's full set
    return paddle_column(model.decode(model.features(state))[0].numpy()), simulated.pos


def report(title: str, rows: np.ndarray) -> None:
    print(f"== {title}: {len(rows)} frames")
    for steps in range(1, 9):
        for aligned in (True, False):
            mask = (rows[:, 0] == steps) & ((rows[:, 1] == 0) == aligned)
            if mask.sum() >= 3:
                right = np.mean(rows[mask, 3] == rows[mask, 2])
                noop = np.mean(rows[mask, 3] == 0)
                print(
                    f"  ball {steps} steps away, {'aligned   ' if aligned else 'misaligned'} "
                    f"n={mask.sum():4d}  agent does what closes the gap {right:.2f}  NOOP {noop:.2f}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a latent agent run on MinAtar/Breakout-v1")
    parser.add_argument("--episodes", type=int, default=6)
    args = parser.parse_args()
    torch.manual_seed(0)
    run = Path(args.run)
    saved = read_config(run, "agent")
    agent = agent_loader(saved, torch.device("cpu"), True)(
        load_checkpoint(policy_snapshots(run)[-1])
    )
    rows, paddles = moments(agent, expert_plays=True, episodes=args.episodes, imagine=True)
    report("on the expert's states", rows)
    report("on its own states", moments(agent, expert_plays=False, episodes=args.episodes)[0])
    for action, pairs in paddles.items():
        pairs = np.array(pairs)
        print(
            f"imagination, 3 x {'LEFT' if action else 'NOOP'}: decoded paddle where the game "
            f"puts it in {np.mean(pairs[:, 0] == pairs[:, 1]):.2f} of {len(pairs)} states"
        )


if __name__ == "__main__":
    main()
