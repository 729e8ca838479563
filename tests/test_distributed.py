"""Data-parallel world-model training (torchrun) on this CPU: two gloo ranks.

The ranks are forked from the test process, which has torch and ditto imported already, so a
rank costs no imports: a 2-rank debug run takes a second or two. One test launches
`python -m torch.distributed.run -m ditto train-world-model` as a user would (its three
processes import torch and ditto afresh: about ten seconds here).

How closely 2 ranks match 1 process: rank r trains on rows r*B/2.. of the same batch-B chunk
stream that one process samples (ChunkSampler's shard), and DDP averages the two ranks'
gradients of their half-batch means, which is the gradient of the whole batch's mean up to
float32 rounding (sums of the same terms in another order: ~1e-7 relative). What differs
besides is the RSSM's Gumbel noise: each rank draws its own (as it must), so it cannot be
the noise one process draws for the whole batch. The comparison therefore takes the mode of
each latent instead of a sample, in both runs; then the losses agree to ~1e-7 relative over
the steps run here (measured), and the test allows 1e-5.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from ditto import distributed
from ditto.checkpoint import load_checkpoint
from ditto.cli import main
from ditto.config import world_model_config
from ditto.data import ChunkSampler
from ditto.distributed import Ranks
from ditto.envs import env_spec
from ditto.errors import DittoError
from ditto.runs import CHECKPOINT, read_config, read_metrics
from ditto.world_model.rssm import RSSM
from ditto.world_model.trainer import load_world_model, train_world_model

from .conftest import random_episode

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available())
    or "fork" not in mp.get_all_start_methods(),
    reason="needs torch.distributed with gloo, and fork",
)

# Four steps of batch 4 (2 rows a rank), checkpoints at steps 2 and 4.
CONFIG = world_model_config("debug", steps=4, log_every=1, eval_every=4, checkpoint_every=2)
LENGTHS = (20, 25, 30, 12)  # windows of 8 frames: the carried state crosses chunk boundaries
RTOL = 1e-5  # see the module's docstring


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_ranks(job, *args) -> None:
    """Run job(rank, *args) in two forked processes that torchrun's variables make ranks."""
    port = _free_port()
    mp.start_processes(_as_rank, (job, port, *args), nprocs=2, start_method="fork")


def _as_rank(rank: int, job, port: int, *args) -> None:
    torch.set_num_threads(1)  # also keeps the forked child off the parent's OpenMP pool
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE="2",
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    job(rank, *args)


def _train(rank: int, data: Path, out: Path, results: Path, kill_rank1_at: int = 0) -> None:
    """Train CONFIG; the weights' digest goes to results/rank<r>.json. Rank 1 may write
    nothing under `out`; with kill_rank1_at=k it is killed as it starts step k."""
    if rank == 1:
        _forbid_writes_under(out)
        if kill_rank1_at:
            _kill_at_sample(kill_rank1_at)
    run = train_world_model([data], out, CONFIG, progress=False)
    (results / f"rank{rank}.json").write_text(json.dumps({"digest": run.digest}))


def _kill_at_sample(call: int) -> None:
    sample, calls = ChunkSampler.sample, []

    def dying(self):
        calls.append(1)
        if len(calls) == call:
            os.kill(os.getpid(), signal.SIGKILL)
        return sample(self)

    ChunkSampler.sample = dying


def _forbid_writes_under(root: Path) -> None:
    """Make this process fail on any write under `root` (its files, folders, renames)."""
    root = os.path.realpath(root)

    def inside(path) -> bool:
        if not isinstance(path, (str, os.PathLike)):
            return False  # a file descriptor
        return os.path.realpath(path) == root or os.path.realpath(path).startswith(root + os.sep)

    def refuse(name, path):
        raise AssertionError(f"rank 1 {name} {path} in the run directory")

    def guard(name, real, writes=lambda *args, **kwargs: True):
        def guarded(path, *args, **kwargs):
            if inside(path) and writes(*args, **kwargs):
                refuse(name, path)
            return real(path, *args, **kwargs)

        return guarded

    def open_writes(mode="r", *args, **kwargs):
        return bool(set(mode) & set("wax+"))

    def os_open_writes(flags, *args, **kwargs):
        return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))

    builtins.open = io.open = guard("opened", builtins.open, open_writes)
    os.open = guard("opened", os.open, os_open_writes)
    for name in ("mkdir", "replace", "rename", "remove", "unlink"):
        setattr(os, name, guard(name, getattr(os, name)))


def _digests(results: Path) -> list[str]:
    return [json.loads((results / f"rank{r}.json").read_text())["digest"] for r in (0, 1)]


def _losses(run: Path) -> dict[int, float]:
    return {
        r["step"]: r["losses/world_model/loss"]
        for r in read_metrics(run / "metrics.jsonl")
        if "losses/world_model/loss" in r
    }


def _mode(self, logits: torch.Tensor) -> torch.Tensor:
    """RSSM._sample without its noise: the most likely class, straight-through as before."""
    logits = logits.float()
    mode = F.one_hot(logits.argmax(-1), self.classes).to(logits.dtype)
    probs = logits.softmax(-1)
    return (mode + probs - probs.detach()).flatten(-2)


@pytest.mark.slow
def test_two_ranks_train_as_one_process_on_the_whole_batch(
    make_dataset, tmp_path, monkeypatch, one_torch_thread
):
    data, _ = make_dataset(lengths=LENGTHS)
    monkeypatch.setattr(RSSM, "_sample", _mode)  # the forked ranks inherit it
    train_world_model([data], tmp_path / "one", CONFIG, progress=False)
    results = tmp_path / "results"
    results.mkdir()
    two_ranks(_train, data, tmp_path / "two", results)

    digest_0, digest_1 = _digests(results)
    assert digest_0 == digest_1  # the ranks hold the same weights, to the bit
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert list(one) == list(two) == [1, 2, 3, 4]
    np.testing.assert_allclose(list(two.values()), list(one.values()), rtol=RTOL)

    # Rank 0 wrote the files one process writes (TensorBoard's named by time and pid).
    def files(run):
        return {p.name.split(".out.")[0] for p in run.iterdir()}

    assert files(tmp_path / "two") == files(tmp_path / "one")
    assert read_config(tmp_path / "two", "world_model")["world_size"] == 2
    assert "world_size" not in read_config(tmp_path / "one", "world_model")


@pytest.mark.slow
def test_a_killed_two_rank_run_resumes_under_torchrun(make_dataset, tmp_path, one_torch_thread):
    """Rank 1 dies at step 4 (the checkpoint is from step 2); `torchrun ... --resume` on two
    ranks then ends as the run that was never stopped: same metrics, same weights."""
    data, _ = make_dataset(lengths=LENGTHS)
    results = tmp_path / "results"
    results.mkdir()
    two_ranks(_train, data, tmp_path / "straight", results)
    assert len(set(_digests(results))) == 1
    split = tmp_path / "split"
    with pytest.raises((mp.ProcessExitedException, mp.ProcessRaisedException)):
        two_ranks(_train, data, split, results, 4)
    assert load_checkpoint(split / CHECKPOINT).meta["step"] == 2

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", "-m", "ditto", "train-world-model"]
    command += ["--data", str(data), "--out", str(split), "--steps", "4", "--resume"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("world model trained for 4 steps") == 2  # each rank's CLI says so

    def metrics(run):
        return [
            {k: v for k, v in r.items() if k != "charts/steps_per_second"}
            for r in read_metrics(run / "metrics.jsonl")
        ]

    assert metrics(split) == metrics(tmp_path / "straight")
    assert load_world_model(split).digest == load_world_model(tmp_path / "straight").digest


def test_a_batch_that_does_not_split_over_the_ranks_is_one_line(
    make_dataset, tmp_path, capsys, monkeypatch
):
    """Refused before the ranks meet, so that each rank ends at once with the same error."""
    data, _ = make_dataset()
    for name, value in {"WORLD_SIZE": "4", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "run"
    argv = ["train-world-model", "--data", str(data), "--out", str(out), "--preset", "debug"]
    assert main([*argv, "--set", "batch=6"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: batch 6 does not split over 4 ranks (torchrun's WORLD_SIZE); give a batch "
        "divisible by the number of processes"
    )
    assert not out.exists()


def test_the_ranks_come_from_torchruns_variables():
    assert distributed.from_env({}) == Ranks() and not Ranks().active
    assert not distributed.from_env({"WORLD_SIZE": "1", "RANK": "0"}).active
    ranks = distributed.from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert ranks == Ranks(4, 3, 1) and ranks.active and not ranks.is_main
    for bad in ({"WORLD_SIZE": "two"}, {"WORLD_SIZE": "2", "RANK": "2"}):
        with pytest.raises(DittoError, match="torchrun sets"):
            distributed.from_env(bad)
    assert distributed.rank_device("cpu", ranks).type == "cpu"
    with pytest.raises(DittoError, match="each rank takes the GPU of its LOCAL_RANK"):
        distributed.rank_device("cuda:0", ranks)
    seeds = {distributed.rank_seed(0, Ranks(4, r)) for r in range(4)}
    assert len(seeds) == 4 and distributed.rank_seed(0, Ranks(4, 1)) in seeds  # reproducible


def test_the_shards_of_a_chunk_stream_are_its_rows():
    """Each shard reads only its rows' frames, and together they are the one-process stream."""
    spec = env_spec("CartPole-v1")
    rng = np.random.default_rng(0)
    episodes = [random_episode(spec, n, rng, i % 2 == 0) for i, n in enumerate((3, 9, 14, 2))]
    whole = ChunkSampler(episodes, spec, batch=6, length=5, seed=1, weights=[1, 2, 3, 4])
    shards = [
        ChunkSampler(episodes, spec, 6, 5, seed=1, weights=[1, 2, 3, 4], shard=(r, 3))
        for r in range(3)
    ]
    for _ in range(8):
        batch, parts = whole.sample(), [shard.sample() for shard in shards]
        for name in ("frames", "actions", "is_first", "is_last", "is_terminal"):
            together = np.concatenate([getattr(part, name) for part in parts])
            assert np.array_equal(getattr(batch, name), together), name
    assert all(shard.state_dict() == whole.state_dict() for shard in shards)
    with pytest.raises(ValueError, match="does not split a batch of 6"):
        ChunkSampler(episodes, spec, 6, 5, shard=(0, 4))
