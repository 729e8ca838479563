"""LUMOS at CPU scale: the language encoder, hindsight relabelling of play segments, the
alignment loss, and lumos / lumos-dbc trained through the CLI on tiny BabyAI play data."""

import json

import pytest
import torch

from ditto.agents.expert_data import ExpertLatents
from ditto.agents.language import SentenceEncoder, Vocabulary, tokenize
from ditto.agents.lumos import (
    Batch,
    GoalConditioned,
    GoalConfig,
    GoalEncoders,
    Relabelled,
    info_nce,
)
from ditto.agents.registry import METHODS, agent_config, method_names
from ditto.cli import main
from ditto.config import world_model_config
from ditto.data import Dataset
from ditto.envs import env_spec
from ditto.errors import ConfigError, DittoError
from ditto.evaluation.protocol import evaluate_run
from ditto.world_model.trainer import load_world_model, train_world_model

MISSIONS = ["go to the red ball", "go to a blue key", "put the red ball next to the blue key"]


def test_sentences_tokenise_and_encode_with_unknown_words_as_unk():
    assert tokenize("Put the red ball, next to THE key") == [
        *("put", "the", "red", "ball", "next", "to", "the", "key"),
    ]
    vocabulary = Vocabulary.from_sentences(MISSIONS)
    assert vocabulary.words[:2] == ("<pad>", "<unk>") and "ball" in vocabulary.words
    ids, lengths = vocabulary.encode(["go to the red ball", "go to the purple box"])
    assert lengths.tolist() == [5, 5] and ids.shape == (2, 5)
    unk = vocabulary.words.index("<unk>")
    assert ids[1, 3] == ids[1, 4] == unk and ids[0, 3] == vocabulary.words.index("red")
    assert vocabulary.unknown(["go to the purple box"]) == {"purple", "box"}
    with pytest.raises(ConfigError, match="words not in the vocabulary: box, purple"):
        vocabulary.encode(["go to the purple box"], strict=True)


def test_the_encoder_embeds_in_order_and_carries_its_vocabulary():
    torch.manual_seed(0)
    encoder = SentenceEncoder(max_words=16, dim=8, out_dim=4)
    encoder.set_vocabulary(Vocabulary.from_sentences(MISSIONS))
    swapped = "put the blue key next to the red ball"
    out = encoder.embed([MISSIONS[2], swapped, MISSIONS[0]])
    assert out.shape == (3, 4) and not torch.allclose(out[0], out[1])  # word order counts
    # A fresh encoder loaded from the state dict reads sentences as the trained one does.
    again = SentenceEncoder(max_words=16, dim=8, out_dim=4)
    again.load_state_dict(encoder.state_dict())
    assert again.vocabulary == encoder.vocabulary
    torch.testing.assert_close(again.embed([MISSIONS[2]]), out[:1])
    with pytest.raises(ConfigError, match="more than max_words"):
        SentenceEncoder(max_words=4, dim=8, out_dim=4).set_vocabulary(encoder.vocabulary)


def test_relabelling_gives_each_frame_its_segments_goal():
    # frames 0..9: a segment [0, 4) said as "go to the red ball", an unannotated one [4, 9)
    segments = ((0, 4, "go to the red ball"), (4, 9, None))
    play = Relabelled(segments, window=3, device=torch.device("cpu"))
    assert play.starts.tolist() == list(range(9))
    # the goal: the segment's end frame, or 3 steps ahead if sooner
    assert play.goals.tolist() == [3, 4, 4, 4, 7, 8, 9, 9, 9]
    assert play.said.tolist() == [0, 1, 2, 3] and play.said_goals.tolist() == [4] * 4
    assert play.ends.tolist() == [4] and play.missions == ["go to the red ball"]
    batch = play.sample(10, 0.5, torch.Generator().manual_seed(0))
    spoken = batch.sentences >= 0
    assert int(spoken.sum()) == 5 and (batch.goals[spoken] == 4).all()
    for t in batch.starts[~spoken].tolist():
        assert batch.goals[batch.starts == t][0] == play.goals[t]
    # the horizon's targets: the start, then t + k, held at the goal once there
    known = Batch(torch.tensor([5, 1]), torch.tensor([8, 4]), torch.tensor([-1, 0]))
    assert play.targets(known, horizon=5).T.tolist() == [[5, 6, 7, 8, 8, 8], [1, 2, 3, 4, 4, 4]]
    # without annotations, no row has a sentence
    plain = Relabelled(((0, 9, None),), window=3, device=torch.device("cpu"))
    assert (plain.sample(8, 0.5, torch.Generator()).sentences == -1).all()


def test_the_alignment_loss_falls_on_a_tiny_problem():
    torch.manual_seed(0)
    config = agent_config("debug", algo="lumos")
    goals = GoalEncoders(feature_dim=12, config=config)
    goals.sentence.set_vocabulary(Vocabulary.from_sentences(MISSIONS))
    # three goal frames, each said by its own mission
    frames = torch.randn(3, 12)
    labels = torch.arange(3)
    ids, lengths = goals.sentence.vocabulary.encode(MISSIONS)
    optimizer = torch.optim.Adam(goals.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = info_nce(goals.of_frames(frames), goals.of_sentences(ids, lengths), labels, 0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    said, seen = goals.of_missions(MISSIONS), goals.of_frames(frames)
    assert ((said @ seen.T).argmax(-1) == labels).all()  # each sentence finds its own goal
    # two rows of one mission are both positives: the best loss is then log 2, not 0
    same = torch.nn.functional.normalize(torch.ones(2, 4), dim=-1)
    assert info_nce(same, same, torch.zeros(2), 0.1).item() == pytest.approx(0.6931, abs=1e-3)


def test_goal_config_is_shared_and_checked():
    assert isinstance(agent_config("debug", algo="lumos-dbc"), GoalConfig)
    assert agent_config("small", algo="lumos", align_weight=2.0).align_weight == 2.0
    with pytest.raises(ConfigError, match="language_fraction"):
        agent_config("debug", algo="lumos", language_fraction=1.5)


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    return make_play(tmp_path_factory.mktemp("lumos"))


def make_play(root):
    """Tiny BabyAI play data (3 episodes of 48 steps, half the annotations kept) and a debug
    world model trained on it for a few steps, under root (tests/test_lumos_eval.py too)."""
    pytest.importorskip("minigrid")
    from ditto.data.collect import collect

    collect(
        *("BabyAI/GoToLocal-v0", "babyai-play", 3, root / "play"),
        **dict(epsilon=0.1, seed=0, annotate=0.5, play_steps=48, progress=False),
    )
    config = world_model_config("debug", steps=4, batch=4, length=16)
    train_world_model([root / "play"], root / "wm", config, progress=False)
    return root


def test_expert_latents_hold_the_play_segments(play, one_torch_thread):
    episodes = list(Dataset(play / "play"))
    model = load_world_model(play / "wm", "cpu").model
    latents = ExpertLatents.from_episodes(model, episodes[:2], 4, torch.device("cpu"))
    first, second = (e.segments for e in episodes[:2])
    offset = len(episodes[0].observations)
    assert latents.segments == (
        *((s.start, s.end, s.mission) for s in first),
        *((offset + s.start, offset + s.end, s.mission) for s in second),
    )
    assert any(m is not None for *_, m in latents.segments)  # some kept annotations


def test_goal_methods_are_registered_but_not_in_a_default_grid():
    assert {"lumos", "lumos-dbc"} <= set(METHODS)
    assert method_names() == ("ditto", "dbc", "dgail", "bc")


def _train(play, tmp_path, capsys, algo, *extra):
    run = tmp_path / algo
    code = main(
        [
            *("train", "--algo", algo, "--world-model", str(play / "wm")),
            *("--expert-data", str(play / "play"), "--expert-episodes", "2"),
            *("--out", str(run), "--preset", "debug", "--steps", "4", "--batch", "8"),
            *("--set", "checkpoint_every=2", *extra),
        ]
    )
    assert code == 0, capsys.readouterr().err
    return run


@pytest.mark.parametrize("algo", ["lumos", "lumos-dbc"])
def test_lumos_methods_train_through_the_cli(play, tmp_path, capsys, algo, one_torch_thread):
    run = _train(play, tmp_path, capsys, algo, "align_weight=0.5")
    saved = json.loads((run / "config.json").read_text())["agent"]
    assert (saved["algo"], saved["align_weight"], saved["goal_dim"]) == (algo, 0.5, 8)
    assert len(list((run / "checkpoints").glob("step_*.safetensors"))) == 2
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 4
    assert {"losses/align", "val/latent_distance", "val/action_accuracy"} <= set(metrics[-1])
    # the snapshot alone steers the policy by the env's missions (tests/test_lumos_eval.py)
    scored = evaluate_run(run, episodes=2, checkpoints=1, device="cpu", progress=False)
    assert scored["episodes"] == 2 and 0.0 <= scored["success_rate"] <= 1.0
    assert set(scored["by_type"]) == {"go to"}


def test_a_goal_policy_does_not_act_without_a_goal():
    config = agent_config("debug", algo="lumos")
    policy = GoalConditioned.deployed_policy(config, env_spec("BabyAI/GoToLocal-v0"), 12)
    with pytest.raises(DittoError, match="a lumos policy acts toward a goal"):
        policy(torch.zeros(1, 12))


def test_data_without_segments_relabels_into_windows(world, tmp_path, capsys, one_torch_thread):
    """An episode without segments is one, cut into goal_window-step goals; without
    annotations there is no alignment loss."""
    run = tmp_path / "lumos"
    code = main(
        [
            *("train", "--algo", "lumos", "--world-model", str(world / "wm")),
            *("--expert-data", str(world / "expert"), "--expert-episodes", "3"),
            *("--out", str(run), "--preset", "debug", "--steps", "2", "--goal-window", "5"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "losses/align" not in metrics[-1] and "val/latent_distance" in metrics[-1]
