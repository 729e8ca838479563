"""Typed configs with named presets, one place for every hyperparameter.

    config = world_model_config("small", steps=2000)   # a preset, with overrides

Presets: `debug` (tiny; every test uses it; seconds on CPU), `small` (trains
usefully on a 2-core CPU in minutes), `paper` (the paper's sizes and batch).

AgentConfig holds what every imitation method shares; each method's own config
extends it in the method's module, and `ditto.agents.registry.agent_config(preset,
algo=..., **overrides)` builds one (this module sits below the agents, so it knows
no method).

A setting is declared once, as a field with its comment: the CLI's flags (ditto.cli) and the
docs' option tables read its type, default, choices (a class's CHOICES) and that comment
(`field_docs`).
"""

from __future__ import annotations

import ast
import io
import math
import sys
import tokenize
from collections.abc import Collection
from dataclasses import asdict, dataclass, fields, replace
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from ditto.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")
ENCODERS = ("conv", "patch")  # world_model/networks.py builds each
DECODERS = ("transpose", "grid", "subpixel", "patch")  # world_model/networks.py builds each


def _has_type(value: Any, expected: type) -> bool:
    """isinstance, except that a bool is no number and an int may stand for a float."""
    if expected in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if expected is float else expected)


class _JsonConfig:
    """JSON round trip of a config dataclass (what config.json holds), and value checks."""

    # Float settings that must lie in [0, 1]; a subclass names its own, and its bases' count too.
    _FRACTIONS: tuple[str, ...] = ()
    # The values a text setting may take: a subclass names its own, and its bases' count too.
    # A registry (a dict) stays open: what registers later is a choice too.
    CHOICES: ClassVar[dict[str, Collection[str]]] = {"precision": PRECISIONS}

    @classmethod
    def choices(cls) -> dict[str, Collection[str]]:
        """Each setting with a fixed set of values -> those values (the CLI offers them)."""
        return {
            k: v
            for klass in reversed(cls.__mro__)
            for k, v in vars(klass).get("CHOICES", {}).items()
        }

    def _check_values(self) -> None:
        """Each text setting with choices takes one of them; each scalar setting has its
        default's type; every int setting but the seed is a count or a size (>= 1); every float
        is finite and >= 0. Caught here, a 0 batch is a one-line error, not a NaN deep in
        training."""
        for name, allowed in self.choices().items():
            if getattr(self, name) not in list(allowed):
                raise ConfigError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        fractions = {
            name for klass in type(self).__mro__ for name in vars(klass).get("_FRACTIONS", ())
        }
        for field in fields(self):
            value, expected = getattr(self, field.name), type(field.default)
            if expected in (bool, int, float, str) and not _has_type(value, expected):
                raise ConfigError(f"{field.name} must be {expected.__name__}, got {value!r}")
            if expected is float:  # an int may stand for a float; config.json then holds a float
                value = float(value)
                object.__setattr__(self, field.name, value)
            if isinstance(value, bool) or field.name == "seed":
                continue
            if isinstance(value, int) and value < 1:
                raise ConfigError(f"{field.name} must be >= 1, got {value}")
            if isinstance(value, float):
                upper = 1.0 if field.name in fractions else math.inf
                if not (math.isfinite(value) and 0.0 <= value <= upper):
                    bounds = "in [0, 1]" if upper == 1.0 else "a finite number >= 0"
                    raise ConfigError(f"{field.name} must be {bounds}, got {value}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]):
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(
                f"unknown {cls.__name__} keys {sorted(unknown)} (a run from another ditto version?)"
            )
        return cls(**data)


@dataclass(frozen=True)
class WorldModelConfig(_JsonConfig):
    # Architecture (DreamerV2 as used by DITTO; see ../shared/method.md).
    cnn_depth: int = 48  # encoder channels depth * (1, 2, 4, 8); decoder mirrors them
    # conv: DreamerV2's encoder; patch: the frame's 4x4 patches as channels, then 3 convs (cheaper)
    encoder: str = "conv"
    # The decoder's upsampling: transpose (DreamerV2's: a 1x1 map, transposed convs with kernels
    # 5, 5, 6, 6), grid (a 4x4 map, each transposed conv with kernel 4 doubles it) or subpixel
    # (a 4x4 map, each 3x3 conv + pixel shuffle doubles it) or patch (grid's up to a 16x16 map,
    # then each cell's 4x4 pixels by a linear map; cheapest); see world_model/networks.py.
    decoder: str = "transpose"
    # Side of the decoded frame: 64, or 32 (upsampled to 64; trains on the frame's 2x2 averages).
    recon_size: int = 64
    deter: int = 1024  # GRU state h
    hidden: int = 1000  # width of the MLPs around the GRU
    stoch: int = 32  # categorical variables in z
    classes: int = 32  # classes per variable
    # Loss: image_scale * image NLL + kl_scale * [balance * KL(sg(q)||p) + (1 - balance) * KL(q||sg(p))]
    image_scale: float = 2.0
    kl_scale: float = 0.1  # weight of the KL term (see image_scale)
    kl_balance: float = 0.8  # share of the KL that trains the prior (see image_scale)
    free_nats: float = 0.0  # KL below this many nats is not penalised
    # Optimisation.
    lr: float = 3e-4  # AdamW learning rate
    eps: float = 1e-5  # AdamW epsilon
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 200.0  # gradient-norm clip
    batch: int = 50  # sequences per batch
    length: int = 50  # steps per sequence
    steps: int = 100_000  # training steps
    carry_state: bool = True  # truncated BPTT: carry h, z across consecutive chunks of an episode
    # Share of training frames drawn from each dataset, in the order they are given; empty: every
    # frame equally likely, so a dataset's share is its share of the frames.
    data_weights: tuple[float, ...] = ()
    # Speed.
    precision: str = "auto"  # auto = bf16 autocast where the hardware has fast bf16
    compile: bool = False  # torch.compile the training step
    # Logging, validation, checkpoints (in training steps).
    log_every: int = 50  # training steps between logged metrics
    eval_every: int = 1000  # training steps between validations
    checkpoint_every: int = 1000  # training steps between checkpoints
    val_episodes: float = 0.1  # fraction of episodes held out for validation (at least one)
    # Validation: the posterior filters this many held-out frames (fewer where no held-out episode
    # is long enough), then the prior predicts open_loop_horizon frames alone. Long, because
    # training carries h across chunks, so slow facts (a score) need many frames to recover.
    open_loop_context: int = 50
    open_loop_horizon: int = 15  # frames the prior predicts alone in validation
    seed: int = 0  # seed of the run

    _FRACTIONS = ("kl_balance", "val_episodes")
    CHOICES: ClassVar[dict[str, Collection[str]]] = {"encoder": ENCODERS, "decoder": DECODERS}

    def __post_init__(self) -> None:
        self._check_values()
        if self.recon_size not in (32, 64):
            raise ConfigError(f"recon_size must be 32 or 64, got {self.recon_size}")
        weights = self.data_weights
        numbers = all(isinstance(w, int | float) and not isinstance(w, bool) for w in weights)
        if weights and not (numbers and all(math.isfinite(w) and w >= 0 for w in weights)):
            raise ConfigError(f"data_weights must be finite numbers >= 0, got {list(weights)}")
        if weights and sum(weights) == 0:
            raise ConfigError("data_weights are all 0; give at least one dataset a weight")
        # config.json holds a list
        object.__setattr__(self, "data_weights", tuple(float(w) for w in weights))


WORLD_MODEL_PRESETS: dict[str, WorldModelConfig] = {
    "debug": WorldModelConfig(
        cnn_depth=4,
        deter=32,
        hidden=32,
        stoch=4,
        classes=4,
        batch=4,
        length=8,
        steps=20,
        precision="fp32",  # on CPU, bf16 autocast is slower than fp32 for a model this small
        log_every=5,
        eval_every=10,
        checkpoint_every=10,
        open_loop_context=2,
        open_loop_horizon=3,
    ),
    "small": WorldModelConfig(
        cnn_depth=8,
        deter=256,
        hidden=256,
        stoch=16,
        classes=16,
        batch=16,
        length=32,
        steps=3000,
        log_every=50,
        eval_every=500,
        checkpoint_every=500,
    ),
    # small's latent sizes with the CPU-cheap networks and half its frames per step: about 3x its
    # steps per second on a 2-core AVX2 CPU (1.5x per frame), so its 6000 steps take about two
    # thirds of small's 3000's time; faster to a moderate error, not yet shown to end as low
    # (docs/notes/speed.md).
    "small-fast": WorldModelConfig(
        cnn_depth=8,
        encoder="patch",
        decoder="patch",
        deter=256,
        hidden=256,
        stoch=16,
        classes=16,
        batch=16,
        length=16,
        steps=6000,
        log_every=50,
        eval_every=1000,
        checkpoint_every=1000,
    ),
    "paper": WorldModelConfig(),
}


def from_preset(presets: dict[str, Any], preset: str, overrides: dict[str, Any]) -> Any:
    """The named preset with `overrides` applied (None values, i.e. flags not given, are ignored)."""
    if preset not in presets:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(presets)}")
    base = presets[preset]
    unknown = sorted(set(overrides) - {f.name for f in fields(base)})
    if unknown:
        raise ConfigError(f"unknown {type(base).__name__} settings {unknown}")
    return replace(base, **{k: _typed(base, k, v) for k, v in overrides.items() if v is not None})


def _typed(base: Any, name: str, value: Any) -> Any:
    """`value` as the type of the preset's `name` (an int where a float goes is fine)."""
    expected = type(getattr(base, name))
    if expected is tuple and isinstance(value, list):  # JSON and YAML give lists
        return tuple(value)
    if not _has_type(value, expected):
        hint = (
            f" (YAML reads {value} as text; write it with a decimal point, like 1.0e-3)"
            if isinstance(value, str) and expected is float and _is_number(value)
            else ""
        )
        raise ConfigError(f"{name} must be {expected.__name__}, got {value!r}{hint}")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def world_model_config(preset: str = "small", **overrides: Any) -> WorldModelConfig:
    return from_preset(WORLD_MODEL_PRESETS, preset, overrides)


@cache
def field_docs(cls: type) -> dict[str, str]:
    """What each field of config class `cls` is, from the comment where a class of its declares
    it (its source, read once): the comment on the field's own lines, else the block of comment
    lines right above it if that is more than a section label. A field declared again without
    a comment (each method's `algo`) keeps its base's; one without any is ''."""
    docs = dict.fromkeys((field.name for field in fields(cls)), "")
    for klass in reversed(cls.__mro__):
        if "__dataclass_fields__" in vars(klass):
            docs.update({name: text for name, text in _declared_docs(klass).items() if text})
    return docs


def _declared_docs(klass: type) -> dict[str, str]:
    """The comment of each field that `klass` itself declares ({} where its source is not to
    be had: a class made at run time, a module without its .py file)."""
    try:
        source = Path(sys.modules[klass.__module__].__file__).read_text()
    except (AttributeError, KeyError, OSError, TypeError):
        return {}
    inline: dict[int, str] = {}
    alone: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            text = token.string.lstrip("#").strip()
            (alone if token.line.strip().startswith("#") else inline)[token.start[0]] = text
    found = [n for n in ast.walk(ast.parse(source)) if getattr(n, "name", None) == klass.__name__]
    names = {field.name for field in fields(klass)}  # not its ClassVars
    docs = {}
    for node in found[0].body if found else []:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) in names:
            lines = range(node.lineno, node.end_lineno + 1)
            own = [inline.get(n) or alone[n] for n in lines if n in inline or n in alone]
            above, line = [], node.lineno - 1
            while line in alone:
                above.insert(0, alone[line])
                line -= 1
            block = " ".join(above)
            docs[node.target.id] = " ".join(own) or (block if len(block.split()) >= 6 else "")
    return docs


@dataclass(frozen=True)
class AgentConfig(_JsonConfig):
    """The settings every imitation method shares: its data, networks, optimiser, schedule and
    scoring. Each method extends it with a frozen config of its own, in the method's module
    (ditto.agents.ditto.DittoConfig, ...), registered with ditto.agents.registry; a setting
    lives with the code that reads it, so a method's config.json holds only what acts on it."""

    algo: str = ""  # the method; each method's config sets its own name here
    expert_episodes: int = 4  # N_E: the first N episodes of the expert dataset
    val_fraction: float = 0.1  # expert episodes held out (by episode) for diagnostics
    batch: int = 512  # expert windows (start states) per update
    layers: int = 8  # actor and critic MLPs: layers x units, ReLU
    units: int = 256  # units per layer of the actor and critic MLPs
    lr: float = 3e-4  # actor (policy) learning rate; CartPole DITTO is steadier at 5e-5
    # Schedule (in updates)
    steps: int = 10_000  # updates
    log_every: int = 100  # updates between logged metrics
    checkpoint_every: int = 500  # updates between checkpoints, and so between policy snapshots
    keep_checkpoints: int = 10  # policy snapshots kept (the protocol scores the last 10)
    # Deploy an exponential moving average of the policy's weights, with this decay per
    # update, in the snapshots and diagnostics (0: the policy as trained, the paper).
    # It smooths the policy's swings from update to update.
    policy_ema: float = 0.0
    greedy: bool = False  # evaluation: sample actions (the paper) or take the mode
    eval_episodes: int = 20  # evaluation episodes per checkpoint (the protocol: 20)
    eval_envs: int = 8  # vectorised envs that play the evaluation episodes
    precision: str = "auto"  # auto (bf16 autocast on fast-bf16 hardware), bf16 or fp32
    seed: int = 0  # seed of the run

    _FRACTIONS = ("val_fraction", "policy_ema")
    # The named presets: each config class gives the values of its own fields that differ
    # from their defaults; a method's preset is what its classes give, base first. Only the
    # presets named here are built.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "debug": {
            "batch": 16,
            "layers": 2,
            "units": 32,
            "steps": 20,
            "log_every": 5,
            "checkpoint_every": 5,
            "keep_checkpoints": 2,
            "eval_episodes": 2,
            "eval_envs": 2,
            "precision": "fp32",
        },
        "small": {
            "layers": 4,
            "units": 256,
            "batch": 256,
            "steps": 2000,
            "log_every": 50,
            "checkpoint_every": 200,
        },
        "paper": {},
    }

    def __post_init__(self) -> None:
        self._check_values()
        if self.policy_ema == 1.0:
            raise ConfigError(
                "policy_ema 1 would never move the deployed policy; use a decay below 1"
            )
        own = type(self).__dataclass_fields__["algo"].default
        if self.algo != own:
            raise ConfigError(
                f"{type(self).__name__} is the config of algo {own!r}, not {self.algo!r}"
            )

    @classmethod
    def presets(cls) -> dict[str, AgentConfig]:
        """Every preset as this config class: the settings its classes give it, base first."""
        presets = {}
        for name in AgentConfig.PRESETS:
            settings: dict[str, Any] = {}
            for klass in reversed(cls.__mro__):
                settings.update(vars(klass).get("PRESETS", {}).get(name, {}))
            presets[name] = cls(**settings)
        return presets

    @classmethod
    def from_json(cls, data: dict[str, Any]):
        """The config from its config.json form. Runs from before each method had its own
        config hold the settings of every method (the one AgentConfig of that time); those
        this method lacks never acted on the run, so they are dropped."""
        own = {f.name for f in fields(cls)}
        return super().from_json(
            {k: v for k, v in data.items() if k in own or k not in _ONE_CONFIG_FIELDS}
        )


# Every setting of the single AgentConfig that all methods shared until each method had its own
# config: what an agent's config.json of that time holds (frozen: the migration in from_json).
_ONE_CONFIG_FIELDS = frozenset(
    """algo expert_episodes val_fraction horizon batch layers units lr critic_lr gamma lam
    target_every entropy entropy_continuous reward reward_on reward_match dbc_entropy disc_layers
    disc_units disc_lr bc_frame_stack bc_cnn_depth bc_augment steps log_every checkpoint_every
    keep_checkpoints policy_ema greedy eval_episodes eval_envs precision seed""".split()  # noqa: SIM905
)
