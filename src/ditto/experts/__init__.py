"""Experts that record demonstrations: scripted controllers, SB3 / RL-Zoo agents, random.

    expert = make_expert("scripted", "CartPole-v1")
    expert = make_expert("sb3:experts/walker.zip", "BipedalWalker-v3", epsilon=0.1)
    expert = make_expert("zoo:rl-trained-agents/ppo/BreakoutNoFrameskip-v4_1", "ALE/Breakout-v5")

SPEC is one of: random | scripted | sb3:PATH.zip | zoo:FOLDER, and for BabyAI levels
babyai-play (the BabyAI bot, as `scripted`; `ditto collect` records play data with it).
"""

from __future__ import annotations

from ditto.envs import env_spec, is_babyai
from ditto.errors import ExpertError
from ditto.experts.base import EpsilonExpert, Expert, RandomExpert, random_action
from ditto.experts.scripted import SCRIPTED_EXPERTS

__all__ = [
    "EpsilonExpert",
    "Expert",
    "RandomExpert",
    "SCRIPTED_EXPERTS",
    "make_expert",
    "random_action",
]

SPEC_HELP = "random | scripted | sb3:PATH.zip | zoo:FOLDER | babyai-play (BabyAI)"
PLAY_EXPERT = "babyai-play"  # the BabyAI bot; `collect` records play data with it


def make_expert(
    spec: str,
    env_id: str,
    *,
    epsilon: float = 0.0,
    seed: int | None = None,
    trust_pickle: bool = False,
) -> Expert:
    """Resolve an expert SPEC for `env_id`; epsilon > 0 mixes in random actions.

    sb3: and zoo: checkpoints are loaded without running code from them; `trust_pickle`
    lets stable-baselines3 unpickle (run) what ditto cannot rebuild safely.
    """
    action = env_spec(env_id).action
    if not 0.0 <= epsilon <= 1.0:
        raise ExpertError(f"--epsilon must be in [0, 1], got {epsilon}")
    expert: Expert
    if is_babyai(env_id) and spec in ("scripted", PLAY_EXPERT):
        from ditto.experts.babyai import BabyAIBotExpert

        # the bot must know which actions were random, so it takes the noise itself
        return BabyAIBotExpert(action.n, seed, epsilon)
    if spec == PLAY_EXPERT:
        raise ExpertError(f"the {PLAY_EXPERT} expert plays BabyAI levels only, not {env_id}")
    if spec == "random":
        expert = RandomExpert(action, seed)
    elif spec == "scripted":
        if env_id not in SCRIPTED_EXPERTS:
            raise ExpertError(
                f"no scripted expert for {env_id}; scripted experts exist for "
                f"{', '.join(sorted(SCRIPTED_EXPERTS))} (or use sb3:PATH.zip, zoo:FOLDER, random)"
            )
        expert = SCRIPTED_EXPERTS[env_id](seed)
    elif spec.startswith("sb3:"):
        from ditto.experts.sb3_checkpoint import load_sb3_expert

        expert = load_sb3_expert(spec[len("sb3:") :], env_id, trust_pickle=trust_pickle, seed=seed)
    elif spec.startswith("zoo:"):
        from ditto.experts.zoo import load_zoo_expert

        expert = load_zoo_expert(spec[len("zoo:") :], env_id, trust_pickle=trust_pickle, seed=seed)
    else:
        raise ExpertError(f"unknown expert spec {spec!r}; expected {SPEC_HELP}")
    if epsilon > 0:
        expert = EpsilonExpert(expert, epsilon, action, seed)
    return expert
