"""LUMOS at CPU scale: a goal-conditioned policy trained in the world model from play data.

(Nematollahi, DeMoss et al., 2025: DITTO's successor.) The policy acts on (feature, g), g a
unit-length goal embedding from one of two encoders:
    frame goal:    g = normalise(MLP(latent of the goal frame))
    sentence goal: g = normalise(GRU over the mission's words)          (ditto.agents.language)

Hindsight relabelling: every segment of play (one mission's steps, `ExpertLatents.segments`;
an episode without segments is one) is an example of reaching its own end. A start frame t is
drawn from a segment, and its goal is the segment's last frame, or the frame `goal_window`
steps ahead if that comes sooner; a fraction `language_fraction` of each batch comes from the
annotated segments, with the mission's sentence as the goal (of the segment's last frame).

Lumos (`lumos`), as DITTO: start at the frame's latent, roll the goal-conditioned actor out H
steps in the world model's prior, and reward step k by the similarity (max-cosine on h) of the
imagined latent to the segment's latent at t + k, held at the goal once the segment has ended
(reaching the goal and staying there is the best return). Actor-critic as DITTO's, the critic
also seeing g. Goal-conditioned D-BC (`lumos-dbc`): the segment's action at t from (feature, g).

Both align the encoders on the annotated segments: InfoNCE between the sentences' and the
goal frames' embeddings (a batch's rows with the same sentence are all positives), weighted
by `align_weight`; the policy's loss trains the encoders too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ditto.agents.actor_critic import ActorCritic, ActorCriticConfig
from ditto.agents.base import LatentConfig, LatentImitation
from ditto.agents.expert_data import ExpertLatents
from ditto.agents.language import SentenceEncoder, Vocabulary
from ditto.agents.networks import Actor, grad_norm, mlp
from ditto.agents.registry import Method, register_method
from ditto.agents.rewards import REWARDS, matched_similarity, max_cosine, reward_function
from ditto.agents.rollout import Rollout, imagine
from ditto.errors import DittoError
from ditto.specs import EnvSpec
from ditto.world_model.model import WorldModel


@dataclass(frozen=True)
class GoalConfig(LatentConfig):
    """The settings of the goal-conditioned methods (lumos, lumos-dbc)."""

    goal_dim: int = 32  # size of the goal embedding g
    word_dim: int = 32  # the sentence encoder's word embedding and GRU size
    max_words: int = 64  # the vocabulary's capacity (the annotations' words, PAD and UNK)
    goal_window: int = 32  # a goal frame: the segment's end, or this many steps ahead if sooner
    language_fraction: float = 0.5  # of each batch: goals as sentences (annotated segments)
    align_weight: float = 1.0  # weight of the sentence-to-goal-frame InfoNCE loss
    align_temperature: float = 0.1  # its temperature

    _FRACTIONS = ("language_fraction",)
    PRESETS = {"debug": {"goal_dim": 8, "word_dim": 8, "goal_window": 8}}


@dataclass(frozen=True)
class LumosConfig(ActorCriticConfig, GoalConfig):
    algo: str = "lumos"
    reward: str = "max_cosine"  # the similarity of the imagined latent to the segment's
    reward_on: str = "h"  # h (the reference code) | feature (h and z)

    CHOICES = {"reward": REWARDS, "reward_on": ("h", "feature")}


@dataclass(frozen=True)
class LumosDBCConfig(GoalConfig):
    algo: str = "lumos-dbc"
    dbc_entropy: float = 0.1  # D-BC's entropy bonus


class GoalEncoders(nn.Module):
    """Goal frame latent -> g, and mission sentence -> g; g of unit length, so that the
    cosine the alignment raises is the distance the actor sees."""

    def __init__(self, feature_dim: int, config: GoalConfig):
        super().__init__()
        self.frame = mlp(feature_dim, config.goal_dim, 2, config.units)
        self.sentence = SentenceEncoder(config.max_words, config.word_dim, config.goal_dim)

    def of_frames(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.frame(features), dim=-1)

    def of_sentences(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.sentence(ids, lengths), dim=-1)

    def of_missions(self, missions: list[str]) -> torch.Tensor:
        return F.normalize(self.sentence.embed(missions), dim=-1)


class GoalPolicy(nn.Module):
    """What a lumos snapshot holds: the actor on (feature, g) and the goal encoders."""

    def __init__(self, actor: Actor, goals: GoalEncoders, actor_z: str = "sample"):
        super().__init__()
        self.actor, self.goals, self.actor_z = actor, goals, actor_z

    @property
    def discrete(self) -> bool:
        return self.actor.discrete

    def forward(self, features: torch.Tensor, goal: torch.Tensor | None = None):
        if goal is None:
            raise DittoError(
                "a lumos policy acts toward a goal: give it one (policy.toward(g); "
                "evaluation's GoalAgent gives each env's mission)"
            )
        return self.actor(torch.cat([features, goal.to(features.dtype)], -1))

    def toward(self, goal: torch.Tensor) -> _Toward:
        """The policy with its goal fixed: what `imagine` rolls out, as it calls actor(features)."""
        return _Toward(self, goal)


class _Toward:
    """A GoalPolicy with its goal (B, G) fixed, called as an actor on features alone (by
    `imagine`, by evaluation's GoalAgent)."""

    def __init__(self, policy: GoalPolicy, goal: torch.Tensor):
        self.policy, self.goal = policy, goal
        self.discrete, self.actor_z = policy.discrete, policy.actor_z

    def parameters(self):
        return self.policy.parameters()

    def __call__(self, features: torch.Tensor):
        return self.policy(features, self.goal)


@dataclass
class Batch:
    """Relabelled play: start frames, goal frames, and each row's sentence (-1: its goal is the
    frame), as indices into the ExpertLatents' frames and into Relabelled.missions."""

    starts: torch.Tensor  # (B,)
    goals: torch.Tensor  # (B,)
    sentences: torch.Tensor  # (B,)


class Relabelled:
    """Hindsight relabelling of play segments, (start, end, mission) frame indices: every frame
    t where an action was taken is a start, its goal the segment's end frame, or t + `window`
    if sooner; the annotated segments' frames also with their mission, whose goal is the end."""

    def __init__(self, segments, window: int, device: torch.device):
        self.missions = sorted({m for *_, m in segments if m is not None})
        number = {m: i for i, m in enumerate(self.missions)}
        rows: dict[str, list[int]] = {k: [] for k in ("starts", "goals", "said", "said_goals")}
        rows.update(sentences=[], ends=[], end_sentences=[])
        for start, end, mission in segments:
            for t in range(start, end):
                rows["starts"].append(t)
                rows["goals"].append(min(t + window, end))
                if mission is not None:
                    rows["said"].append(t)
                    rows["said_goals"].append(end)
                    rows["sentences"].append(number[mission])
            if mission is not None:
                rows["ends"].append(end)
                rows["end_sentences"].append(number[mission])
        if not rows["starts"]:
            raise DittoError("the play data has no step to relabel")
        for name, values in rows.items():
            setattr(self, name, torch.tensor(values, dtype=torch.long, device=device))

    @property
    def annotated(self) -> int:
        """How many annotated segments there are."""
        return len(self.ends)

    def sample(self, batch: int, language_fraction: float, generator: torch.Generator) -> Batch:
        """`batch` rows, round(batch * language_fraction) of them with a sentence (if any)."""
        said = round(batch * language_fraction) if self.annotated else 0
        rows = _choice(len(self.starts), batch - said, generator).to(self.starts.device)
        spoken = _choice(len(self.said), said, generator).to(self.starts.device)
        return Batch(
            torch.cat([self.starts[rows], self.said[spoken]]),
            torch.cat([self.goals[rows], self.said_goals[spoken]]),
            torch.cat([torch.full_like(rows, -1), self.sentences[spoken]]),
        )

    @staticmethod
    def targets(batch: Batch, horizon: int) -> torch.Tensor:
        """(H+1, B) frame indices: the start, then t + k, held at the goal once there."""
        k = torch.arange(horizon + 1, device=batch.starts.device)[:, None]
        return torch.minimum(batch.starts[None] + k, batch.goals[None])


def _choice(n: int, count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(max(n, 1), (count,), generator=generator)


def info_nce(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor, temperature: float):
    """Symmetric InfoNCE between unit vectors a[i] and b[i] (B, G): a[i] should be nearer b[j]
    than the rest exactly when labels[i] == labels[j] (the same mission said of two goal
    frames: both are positives, not one a false negative)."""
    logits = a @ b.T / temperature
    positive = (labels[:, None] == labels[None]).float()
    target = positive / positive.sum(-1, keepdim=True)  # symmetric: rows of a label sum alike
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class GoalConditioned(LatentImitation):
    """What lumos and lumos-dbc share: relabelled play, the goal encoders, their alignment and
    the diagnostics. Subclasses set self.actor to a GoalPolicy (`conditioned`)."""

    actor: GoalPolicy
    goal_conditioned = True  # evaluation gives each episode's mission (protocol.py)
    uses_windows = False  # a segment shorter than the horizon is a target held at its goal

    def __init__(self, model: WorldModel, expert: ExpertLatents, config: GoalConfig):
        super().__init__(model, expert, config)
        self.device = expert.features.device
        self.play = Relabelled(expert.segments, config.goal_window, self.device)
        self.vocabulary = Vocabulary.from_sentences(self.play.missions)
        ids, lengths = self.vocabulary.encode(self.play.missions or [""])
        self.sentence_ids, self.sentence_lengths = ids.to(self.device), lengths
        self._validation: tuple[ExpertLatents, Relabelled] | None = None

    @classmethod
    def deployed_policy(cls, config: GoalConfig, spec: EnvSpec, feature_dim: int) -> GoalPolicy:
        actor = Actor(feature_dim + config.goal_dim, spec.action, config.layers, config.units)
        return GoalPolicy(actor, GoalEncoders(feature_dim, config), config.actor_z)

    def conditioned(self, actor: Actor) -> GoalPolicy:
        """`actor` with new goal encoders that know the annotations' words."""
        goals = GoalEncoders(self.model.feature_dim, self.config)
        goals.sentence.set_vocabulary(self.vocabulary)
        return GoalPolicy(actor, goals, self.config.actor_z).to(self.device)

    def goal_embeddings(self, batch: Batch) -> torch.Tensor:
        """g (B, G) of each row: its sentence's where it has one, else its goal frame's."""
        goals = self.actor.goals
        frames = goals.of_frames(self.expert.actor_features[batch.goals])
        if not self.play.annotated:
            return frames
        said = goals.of_sentences(self.sentence_ids, self.sentence_lengths)
        return torch.where(
            (batch.sentences >= 0)[:, None], said[batch.sentences.clamp(min=0)], frames
        )

    def alignment(self, generator: torch.Generator) -> torch.Tensor | None:
        """InfoNCE of a batch of annotated segments' sentences with their goal frames (None
        without annotations)."""
        if not self.play.annotated:
            return None
        pick = _choice(self.play.annotated, self.config.batch, generator).to(self.device)
        ends, sentences = self.play.ends[pick], self.play.end_sentences[pick]
        goals = self.actor.goals
        frames = goals.of_frames(self.expert.actor_features[ends])
        said = goals.of_sentences(self.sentence_ids, self.sentence_lengths)[sentences]
        return info_nce(frames, said, sentences, self.config.align_temperature)

    def imagine_toward(
        self, policy: GoalPolicy, expert: ExpertLatents, batch: Batch, goal: torch.Tensor
    ) -> Rollout:
        """`policy`'s rollout toward `goal` from each row's start frame (the shared `imagine`)."""
        starts = batch.starts
        return imagine(
            self.model,
            policy.toward(goal),
            expert.features[starts],
            self.config.horizon,
            self.config.actor_z,
            expert.actor_features[starts],
        )

    @torch.no_grad()
    def diagnostics(
        self, validation: ExpertLatents, policy: GoalPolicy, windows: int = 256
    ) -> dict[str, float]:
        """On held-out play with frame goals: the goal-reaching latent distance 1 - max-cosine(h)
        to the relabelled segment, and how often the policy's mode is the action taken; with
        held-out annotations, the mean cosine of their sentences' g to their goal frames', and
        the action accuracy toward the sentences."""
        if self._validation is None or self._validation[0] is not validation:
            play = Relabelled(validation.segments, self.config.goal_window, self.device)
            self._validation = (validation, play)
        play = self._validation[1]
        batch = play.sample(windows, 0.0, torch.Generator().manual_seed(0))
        goal = policy.goals.of_frames(validation.actor_features[batch.goals])
        rollout = self.imagine_toward(policy, validation, batch, goal)
        targets = validation.features[play.targets(batch, self.config.horizon)]
        similarity = max_cosine(self.h(targets[1:]), self.h(rollout.features[1:]))
        metrics = {"val/latent_distance": float(1 - similarity.mean())}
        predicted = policy(validation.actor_features[batch.starts], goal).mode()
        taken = validation.actions[batch.starts]
        if policy.discrete:
            agree = (predicted.argmax(-1) == taken.argmax(-1)).float().mean()
            metrics["val/action_accuracy"] = float(agree)
        else:
            metrics["val/action_mse"] = float((predicted - taken).square().mean())
        if play.annotated:
            said = policy.goals.of_missions([play.missions[i] for i in play.end_sentences])
            frames = policy.goals.of_frames(validation.actor_features[play.ends])
            metrics["val/goal_cosine"] = float((said * frames).sum(-1).mean())
            if policy.discrete:  # as at test time: toward the sentence
                goal = policy.goals.of_missions([play.missions[i] for i in play.sentences])
                predicted = policy(validation.actor_features[play.said], goal).mode()
                agree = predicted.argmax(-1) == validation.actions[play.said].argmax(-1)
                metrics["val/action_accuracy_language"] = float(agree.float().mean())
        return metrics


class Lumos(GoalConditioned):
    """DITTO toward relabelled goals: actor-critic in imagination, rewarded by the similarity
    of each imagined latent to the segment's (held at the goal)."""

    def __init__(self, model: WorldModel, expert: ExpertLatents, config: LumosConfig):
        super().__init__(model, expert, config)
        inputs = model.feature_dim + config.goal_dim
        self.learner = ActorCritic(inputs, model.spec.action, config).to(self.device)
        self.actor = self.conditioned(self.learner.actor)
        self.goal_optimizer = torch.optim.Adam(self.actor.goals.parameters(), lr=config.lr)
        self.similarity = reward_function(config.reward)

    def stateful(self):
        goals = {"goals": self.actor.goals, "goal_optim": self.goal_optimizer}
        return {"learner": self.learner, **goals, **self.learner.optimizers()}

    def reward(self, targets: torch.Tensor, learner: torch.Tensor) -> torch.Tensor:
        """(H+1, B, F) each -> (H, B): the reward of reaching each imagined state."""
        on_h = self.config.reward_on == "h"
        target, reached = (self.h(x[1:]) if on_h else x[1:] for x in (targets, learner))
        return matched_similarity(self.similarity, target.float(), reached.float())

    def update(self, step, generator):
        cfg = self.config
        batch = self.play.sample(cfg.batch, cfg.language_fraction, generator)
        self.goal_optimizer.zero_grad(set_to_none=True)
        goal = self.goal_embeddings(batch)
        rollout = self.imagine_toward(self.actor, self.expert, batch, goal)
        targets = self.expert.features[self.play.targets(batch, cfg.horizon)]
        with torch.set_grad_enabled(not self.actor.discrete):  # continuous: backprop the reward
            rewards = self.reward(targets, rollout.features)
        # The critic values a state toward its goal; the actor's loss reaches the goal
        # encoders through its log-probs (REINFORCE) or its actions (dynamics backprop).
        seen = goal.detach().to(rollout.features.dtype).expand(len(rollout.features), -1, -1)
        conditioned = Rollout(
            torch.cat([rollout.features, seen], -1),
            rollout.actions,
            rollout.log_probs,
            rollout.entropies,
        )
        metrics = self.learner.update(conditioned, rewards, step)
        align = self.alignment(generator)
        if align is not None:
            (cfg.align_weight * align).backward()
            metrics["losses/align"] = align.item()
        metrics["charts/goal_grad_norm"] = grad_norm(self.actor.goals).item()
        self.goal_optimizer.step()
        return metrics


class LumosDBC(GoalConditioned):
    """Goal-conditioned D-BC: the action taken at t from (feature at t, g of the relabelled goal)."""

    def __init__(self, model: WorldModel, expert: ExpertLatents, config: LumosDBCConfig):
        super().__init__(model, expert, config)
        self.actor = self.conditioned(
            Actor(
                model.feature_dim + config.goal_dim, model.spec.action, config.layers, config.units
            )
        )
        self.optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.lr)

    def stateful(self):
        return {"actor": self.actor, "actor_optim": self.optimizer}

    def update(self, step, generator):
        cfg = self.config
        batch = self.play.sample(cfg.batch, cfg.language_fraction, generator)
        dist = self.actor(self.expert.actor_features[batch.starts], self.goal_embeddings(batch))
        log_prob = dist.log_prob(self.expert.actions[batch.starts]).mean()
        entropy = dist.entropy().mean()
        cloning = -log_prob - cfg.dbc_entropy * entropy
        align = self.alignment(generator)
        loss = cloning if align is None else cloning + cfg.align_weight * align
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = grad_norm(self.actor)
        self.optimizer.step()
        metrics = {
            "losses/actor": cloning.item(),
            "charts/actor_grad_norm": norm.item(),
            "charts/log_prob": log_prob.item(),
            "charts/entropy": entropy.item(),
        }
        if align is not None:
            metrics["losses/align"] = align.item()
        return metrics


# Not in a grid's default methods: they are scored toward missions, which only BabyAI's envs
# give (and learn from play data's segments).
register_method(Method(LumosConfig, Lumos, "LUMOS", "tab:olive", in_default_grid=False))
register_method(Method(LumosDBCConfig, LumosDBC, "goal D-BC", "tab:cyan", in_default_grid=False))
