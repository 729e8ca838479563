"""The world model: encoder + RSSM + decoder, reward-free, trained on all recorded episodes.

Public API (what agents use, and nothing else):

    posts, last = wm.observe(frames, actions, is_first, state)  # posterior filter, (B, T, ...),
                                                              # and its carry: the last state
    state = wm.obs_step(state, action, frame, is_first)     # one posterior step (acting live)
    state = wm.img_step(state, action)                      # one prior step
    kl = wm.kl(posts)                                       # KL(posterior || prior), nats/step
    feats = wm.features(state)                              # concat(h, z), see rssm.py
    feats = wm.features(state, z="probs")                   # concat(h, z's probabilities)
    state = wm.state_from_features(feats)                   # and back (to imagine from cached latents)
    state = wm.initial(batch)
    frames_mean = wm.decode(feats)
    action_in = wm.policy_action_input(policy_action)       # policy action -> model input

`actions` given to observe are the encoded pre-actions of the frames
(ActionSpec.encode: one-hot in the world model's action space, or raw vectors).
"""

from __future__ import annotations

import torch
from torch import nn

from ditto.config import WorldModelConfig
from ditto.errors import SpecError
from ditto.specs import EnvSpec
from ditto.world_model.networks import Decoder, Encoder, frames_to_input
from ditto.world_model.rssm import RSSM, State

# What of z features() holds: its one-hot sample (the decoder, the rewards, the paper's actor) or
# the probabilities it was sampled from (an actor's option: the sample adds noise it cannot use).
FEATURE_Z = ("sample", "probs")


class WorldModel(nn.Module):
    def __init__(self, spec: EnvSpec, config: WorldModelConfig):
        super().__init__()
        if tuple(spec.obs_shape[1:]) != (64, 64):
            raise SpecError(f"the world model takes 64x64 frames, got {spec.obs_shape[1:]}")
        self.spec, self.config = spec, config
        channels = spec.obs_shape[0]
        self.encoder = Encoder(channels, config.cnn_depth, config.encoder)
        self.rssm = RSSM(
            spec.action.world_model_dim,
            self.encoder.out_dim,
            config.deter,
            config.hidden,
            config.stoch,
            config.classes,
        )
        self.decoder = Decoder(
            self.rssm.feature_dim, channels, config.cnn_depth, config.decoder, config.recon_size
        )
        # Maps a policy action (one-hot over the game's minimal set, or a raw vector) to the
        # world model's action input (one-hot over ALE's full set for Atari).
        eye = torch.eye(spec.action.world_model_dim)
        if spec.action.world_model_index is not None:
            eye = eye[list(spec.action.world_model_index)]
        self.register_buffer("policy_to_model", eye, persistent=False)

    @property
    def feature_dim(self) -> int:
        return self.rssm.feature_dim

    def initial(self, batch: int) -> State:
        if batch < 1:
            raise SpecError(f"initial takes a batch size >= 1, got {batch}")
        return self.rssm.initial(batch)

    def features(self, state: State, z: str = "sample") -> torch.Tensor:
        """concat(h, z): z as its one-hot sample, or z="probs" as its probabilities (of the same
        size, stoch x classes). A state from state_from_features has no logits: no probs."""
        if not isinstance(state, State):
            raise SpecError(
                f"features takes a State (from observe, img_step or initial), got {type(state).__name__}"
            )
        if z == "sample":
            return self.rssm.features(state)
        if z != "probs":
            raise SpecError(f"features takes z in {', '.join(FEATURE_Z)}, got {z!r}")
        probs = state.logits.float().softmax(-1).flatten(-2).to(state.deter.dtype)
        return torch.cat([state.deter, probs], -1)

    def state_from_features(self, features: torch.Tensor) -> State:
        """A state to imagine from, given its features (e.g. a cached expert latent)."""
        return self.rssm.state_from_features(features)

    @property
    def deter_size(self) -> int:
        """features[..., :deter_size] is h, the rest is z."""
        return self.rssm.deter_size

    def img_step(self, state: State, action: torch.Tensor) -> State:
        """One prior step from `state` (batch B) under `action`, (B, world_model_dim): see
        policy_action_input for a policy's actions."""
        expected = (*state.deter.shape[:-1], self.spec.action.world_model_dim)
        if tuple(action.shape) != expected:
            raise SpecError(
                f"action must have shape {expected} for this state of {self.spec.env_id}, "
                f"got {tuple(action.shape)}"
            )
        return self.rssm.img_step(state, action)

    def policy_action_input(self, policy_action: torch.Tensor) -> torch.Tensor:
        """(..., n_policy) one-hot or vector -> (..., world_model_dim); keeps straight-through gradients."""
        return policy_action @ self.policy_to_model

    def check_inputs(
        self, frames: torch.Tensor, actions: torch.Tensor, is_first: torch.Tensor
    ) -> None:
        if not all(isinstance(x, torch.Tensor) for x in (frames, actions, is_first)):
            raise SpecError(
                "frames, actions and is_first must be torch tensors (torch.from_numpy makes them)"
            )
        expected = tuple(self.spec.obs_shape)
        if frames.dim() != 5 or tuple(frames.shape[2:]) != expected:
            raise SpecError(
                f"frames must have shape (B, T, {', '.join(map(str, expected))}), got {tuple(frames.shape)}"
            )
        if frames.dtype != torch.uint8:
            raise SpecError(f"frames must be uint8, got {frames.dtype}")
        if (
            actions.dim() != 3
            or actions.shape[:2] != frames.shape[:2]
            or actions.shape[-1] != self.spec.action.world_model_dim
            or actions.dtype != torch.float32
        ):
            raise SpecError(
                f"actions must be float32 of shape (B, T, {self.spec.action.world_model_dim}) for "
                f"{self.spec.env_id} (ActionSpec.encode makes them), got {actions.dtype} {tuple(actions.shape)}"
            )
        if is_first.shape != frames.shape[:2] or is_first.dtype != torch.bool:
            raise SpecError(
                f"is_first must be bool of shape (B, T), got {is_first.dtype} {tuple(is_first.shape)}"
            )

    def observe(
        self,
        frames: torch.Tensor,
        actions: torch.Tensor,
        is_first: torch.Tensor,
        state: State | None = None,
    ) -> tuple[State, State]:
        """Posterior states of a batch of sequences (B, T, ...), and the last of them (B, ...):
        the carry to pass as `state` when the sequences continue in a next call."""
        self.check_inputs(frames, actions, is_first)
        if state is not None and state.deter.shape[0] != frames.shape[0]:
            raise SpecError(
                f"state has batch {state.deter.shape[0]}, frames have {frames.shape[0]}"
            )
        posts = self.rssm.observe(self.encoder(frames), actions, is_first, state)
        return posts, State(*(part[:, -1] for part in posts))

    def obs_step(
        self, state: State, action: torch.Tensor, frames: torch.Tensor, is_first: torch.Tensor
    ) -> State:
        """One posterior step for a batch of live envs: frames (B, C, H, W) uint8, the action
        that led to them (B, world_model_dim), is_first (B,) bool (resets those envs)."""
        self.check_inputs(frames[:, None], action[:, None], is_first[:, None])
        return self.rssm.obs_step(state, action, self.encoder(frames), is_first)

    def kl(self, posts: State) -> torch.Tensor:
        """KL(posterior || prior) of posterior states, in nats per step (no free nats)."""
        return self.rssm.kl_loss(posts, self.config.kl_balance, 0.0)[1]

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Mean frame in frames_to_input's scale ([-0.5, 0.5]); see to_uint8."""
        if features.shape[-1] != self.feature_dim:
            raise SpecError(
                f"features must have shape (..., {self.feature_dim}) (h then z, from features(state)), "
                f"got {tuple(features.shape)}"
            )
        return self.decoder(features)

    def loss(
        self,
        frames: torch.Tensor,
        actions: torch.Tensor,
        is_first: torch.Tensor,
        state: State | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], State]:
        """The training loss of a batch, its parts, and the last posterior state (to carry on)."""
        cfg = self.config
        posts = self.rssm.observe(self.encoder(frames), actions, is_first, state)
        recon = self.decoder(self.rssm.features(posts)).float()
        # Unit-variance Gaussian NLL summed over pixels (up to a constant), mean over batch and time.
        image_nll = 0.5 * (recon - frames_to_input(frames)).square().sum((-3, -2, -1)).mean()
        kl_loss, kl_value = self.rssm.kl_loss(posts, cfg.kl_balance, cfg.free_nats)
        loss = cfg.image_scale * image_nll + cfg.kl_scale * kl_loss
        metrics = {"loss": loss, "image_nll": image_nll, "kl": kl_value}
        last = State(*(part[:, -1] for part in posts))
        return loss, metrics, last

    @torch.no_grad()
    def open_loop(
        self, frames: torch.Tensor, actions: torch.Tensor, is_first: torch.Tensor, context: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruct the first `context` frames, then predict the rest from the prior alone.

        Returns (reconstructions of the context, open-loop predictions), both as
        decoder means in [-0.5, 0.5]; the predictions use the real actions.
        """
        posts = self.rssm.observe(
            self.encoder(frames[:, :context]), actions[:, :context], is_first[:, :context]
        )
        recon = self.decoder(self.rssm.features(posts))
        state = State(*(part[:, -1] for part in posts))
        predictions = []
        for t in range(context, frames.shape[1]):
            state = self.rssm.img_step(state, actions[:, t])
            predictions.append(self.decoder(self.rssm.features(state)))
        return recon, torch.stack(predictions, 1)


def to_uint8(decoded: torch.Tensor) -> torch.Tensor:
    """Decoder means -> uint8 frames, for pictures."""
    return ((decoded.float() + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
