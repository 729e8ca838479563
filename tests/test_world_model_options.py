"""The world model's CPU-saving architecture options (encoder, decoder, recon_size) on the debug
preset: each builds, decodes frames of the input's shape and learns; the defaults build
DreamerV2's networks exactly as before the options existed."""

import numpy as np
import pytest
import torch

from ditto.config import WORLD_MODEL_PRESETS, WorldModelConfig, world_model_config
from ditto.envs import env_spec
from ditto.errors import ConfigError
from ditto.world_model.model import WorldModel

OPTIONS = [
    {"encoder": "patch"},
    {"decoder": "grid"},
    {"decoder": "subpixel"},
    {"recon_size": 32},
    {"decoder": "grid", "recon_size": 32},
    {"decoder": "subpixel", "recon_size": 32},
    {"decoder": "patch"},
    {"decoder": "patch", "recon_size": 32},
    {"encoder": "patch", "decoder": "grid", "recon_size": 32},
    {"encoder": "patch", "decoder": "patch"},
]


def moving_square_batch(spec, batch=2, steps=4):
    """Frames with a bright square moving right: structure a few steps can start to learn."""
    frames = np.zeros((batch, steps, *spec.obs_shape), np.uint8)
    for b in range(batch):
        for t in range(steps):
            x = 8 + 6 * t + 10 * b
            frames[b, t, :, 20:36, x : x + 16] = 255
    actions = torch.from_numpy(spec.action.encode(np.zeros((batch, steps), np.int64)))
    is_first = torch.zeros(batch, steps, dtype=torch.bool)
    is_first[:, 0] = True
    return torch.from_numpy(frames), actions, is_first


@pytest.mark.parametrize(
    "options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
)
def test_option_builds_decodes_frames_and_learns(options):
    spec = env_spec("CartPole-v1")
    torch.manual_seed(0)
    model = WorldModel(spec, world_model_config("debug", lr=3e-3, **options))
    frames, actions, is_first = moving_square_batch(spec)
    posts, _ = model.observe(frames, actions, is_first)
    assert model.decode(model.features(posts)).shape == frames.shape
    optimizer = torch.optim.AdamW(model.parameters(), lr=model.config.lr)
    losses = []
    for _ in range(10):
        loss, _, _ = model.loss(frames, actions, is_first)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def test_recon_size_32_decodes_2x2_blocks():
    spec = env_spec("CartPole-v1")
    model = WorldModel(spec, world_model_config("debug", recon_size=32))
    frame = model.decode(torch.randn(3, model.feature_dim))
    assert frame.shape == (3, 1, 64, 64)
    assert torch.equal(
        frame, frame[..., ::2, ::2].repeat_interleave(2, -2).repeat_interleave(2, -1)
    )


def test_defaults_build_the_networks_as_before():
    """The defaults are DreamerV2's networks, module for module (a run's weights load), and
    a config.json written before the options existed reads back as those defaults."""
    model = WorldModel(env_spec("CartPole-v1"), world_model_config("debug"))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sum(p.numel() for p in model.parameters()) == 87273
    assert {k: v for k, v in shapes.items() if k.startswith(("encoder", "decoder"))} == {
        "encoder.net.0.weight": (4, 1, 4, 4),
        "encoder.net.0.bias": (4,),
        "encoder.net.2.weight": (8, 4, 4, 4),
        "encoder.net.2.bias": (8,),
        "encoder.net.4.weight": (16, 8, 4, 4),
        "encoder.net.4.bias": (16,),
        "encoder.net.6.weight": (32, 16, 4, 4),
        "encoder.net.6.bias": (32,),
        "decoder.linear.weight": (128, 48),
        "decoder.linear.bias": (128,),
        "decoder.net.0.weight": (128, 16, 5, 5),
        "decoder.net.0.bias": (16,),
        "decoder.net.2.weight": (16, 8, 5, 5),
        "decoder.net.2.bias": (8,),
        "decoder.net.4.weight": (8, 4, 6, 6),
        "decoder.net.4.bias": (4,),
        "decoder.net.6.weight": (4, 1, 6, 6),
        "decoder.net.6.bias": (1,),
    }
    for preset in ("debug", "small", "paper"):
        config = WORLD_MODEL_PRESETS[preset]
        assert (config.encoder, config.decoder, config.recon_size) == ("conv", "transpose", 64)
        old = {
            k: v
            for k, v in config.to_json().items()
            if k not in ("encoder", "decoder", "recon_size")
        }
        assert WorldModelConfig.from_json(old) == config


def test_default_decoder_computes_what_dreamerv2s_did():
    """The default decoder, given the same weights, computes exactly what the decoder did before
    the options existed (a linear to a 1x1 map, then 4 transposed convs, ELU between)."""
    depth, model = 4, WorldModel(env_spec("CartPole-v1"), world_model_config("debug"))
    before = torch.nn.Sequential(
        torch.nn.ConvTranspose2d(32 * depth, 4 * depth, 5, stride=2),
        torch.nn.ELU(),
        torch.nn.ConvTranspose2d(4 * depth, 2 * depth, 5, stride=2),
        torch.nn.ELU(),
        torch.nn.ConvTranspose2d(2 * depth, depth, 6, stride=2),
        torch.nn.ELU(),
        torch.nn.ConvTranspose2d(depth, 1, 6, stride=2),
    )
    before.load_state_dict(model.decoder.net.state_dict())
    features = torch.randn(5, model.feature_dim)
    expected = before(model.decoder.linear(features).reshape(-1, 32 * depth, 1, 1))
    torch.testing.assert_close(model.decode(features), expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "bad", [{"recon_size": 16}, {"decoder": "pixel"}, {"encoder": "mlp"}], ids=str
)
def test_bad_option_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        world_model_config("debug", **bad)


def test_bench_step_takes_the_options_as_overrides():
    """What `benchmarks/world_model_tiers.py speed --set` times: the preset with the options."""
    from ditto.world_model.bench import train_step

    overrides = {"encoder": "patch", "decoder": "grid", "recon_size": 32}
    _, step, shape = train_step("debug", "fp32", torch.device("cpu"), overrides=overrides)
    step()
    spec = env_spec("ALE/Pong-v5")
    params = [
        sum(p.numel() for p in WorldModel(spec, world_model_config("debug", **o)).parameters())
        for o in (overrides, {})
    ]
    assert shape["params"] == params[0] != params[1]
