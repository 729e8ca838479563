"""Datasets to and from Minari (https://minari.farama.org), the offline-RL dataset format.

    export_minari("data/pong", "ditto/pong-scripted-v0")   # -> ~/.minari/datasets/ditto/pong-scripted-v0
    import_minari("ditto/pong-scripted-v0", "data/pong2")  # a ditto dataset again, exactly
    import_minari("/some/where/cartpole-v0", "data/cp", env_id="CartPole-v1")

A Minari dataset lives in ROOT/<dataset id>/data/{metadata.json, main_data.hdf5},
where ROOT is $MINARI_DATASETS_PATH or ~/.minari/datasets. Nothing is ever
downloaded: a dataset that is not on disk is an error.

Export writes the HDF5 backend with `jpeg_encoding=False`, so frames are stored
as raw uint8 arrays (Minari would otherwise JPEG-encode image observations, a
lossy step), and records ditto's EnvSpec as a JSON string in the metadata key
`ditto_env_spec`; import restores it, frames, actions, rewards and episode ends
exactly. A dataset made elsewhere must have image observations (H, W, 3),
(H, W, 1), (H, W) or (C, H, W) uint8: they are resized to ditto frames with
`ditto.envs.to_frame`, the one place for pixel preprocessing.

Who drew the frames (`EnvSpec.pixels`) is recorded as the dataset says: a ditto
export keeps its label; any other import is labelled `minari:<dataset id>`, since
ditto cannot know whether its frames look like the env's as ditto draws it. The
caller who knows may assert a label (`pixels=`, `--pixels`), e.g. the one
`ditto collect` records for the env, so that the import mixes with collected data.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

import ditto
from ditto.data.dataset import Dataset, DatasetWriter
from ditto.data.episode import Episode
from ditto.envs import FRAME_SIZE, env_spec, to_frame
from ditto.envs.rendered import action_spec_of
from ditto.errors import DatasetError, DittoError, EnvError
from ditto.specs import ActionSpec, EnvSpec

DATASETS_PATH_VAR = "MINARI_DATASETS_PATH"
SPEC_KEY = "ditto_env_spec"  # metadata.json: ditto's EnvSpec, as a JSON string
SOURCE_KEY = "ditto_source"  # metadata.json: the exported dataset's source, as a JSON string
_DATA = "data"
_METADATA = "metadata.json"
_HDF5 = "main_data.hdf5"


def minari_root(root: str | Path | None = None) -> Path:
    """Where local Minari datasets live: `root`, else $MINARI_DATASETS_PATH, else ~/.minari/datasets.

    The same rule as minari.storage.get_dataset_path, without its side effect of
    creating the directory.
    """
    if root is not None:
        return Path(root)
    env = os.environ.get(DATASETS_PATH_VAR)
    if env is not None:
        return Path(env)
    return Path.home() / ".minari" / "datasets"


@contextmanager
def _datasets_path(root: Path) -> Iterator[None]:
    """Point Minari's own functions (namespaces) at `root` for the duration."""
    old = os.environ.get(DATASETS_PATH_VAR)
    os.environ[DATASETS_PATH_VAR] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(DATASETS_PATH_VAR, None)
        else:
            os.environ[DATASETS_PATH_VAR] = old


# ----------------------------------------------------------------------------- export


def _action_space(action: ActionSpec) -> gym.Space:
    if action.is_discrete:
        return gym.spaces.Discrete(action.n)
    return gym.spaces.Box(
        np.asarray(action.low, dtype=np.float32),
        np.asarray(action.high, dtype=np.float32),
        dtype=np.float32,
    )


def _episode_buffer(episode: Episode):
    from minari.data_collector.episode_buffer import EpisodeBuffer

    steps = episode.length
    terminations = np.zeros(steps, dtype=bool)
    truncations = np.zeros(steps, dtype=bool)
    terminations[-1] = episode.terminated
    truncations[-1] = episode.truncated
    return EpisodeBuffer(
        observations=np.asarray(episode.observations),
        actions=np.asarray(episode.actions),
        rewards=np.asarray(episode.rewards, dtype=np.float32),
        terminations=terminations,
        truncations=truncations,
    )


def export_minari(
    dataset_dir: str | Path, dataset_id: str, *, root: str | Path | None = None
) -> Path:
    """Write the ditto dataset at `dataset_dir` as the local Minari dataset `dataset_id`.

    `dataset_id` is (NAMESPACE/)NAME-vVERSION, e.g. "ditto/pong-scripted-v0"; the
    dataset goes to ROOT/<dataset_id> (ROOT: `root`, else $MINARI_DATASETS_PATH,
    else ~/.minari/datasets), whose path is returned. It is written to a hidden
    folder beside it and renamed into place when complete, so an interrupted
    export leaves no half-written dataset. An existing dataset is never replaced.
    """
    from minari import __version__ as minari_version
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.dataset.minari_storage import MinariStorage
    from minari.namespace import create_namespace, list_local_namespaces

    dataset = Dataset(dataset_dir)
    try:
        namespace, _, _ = parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        raise DatasetError(
            f"bad Minari dataset id {dataset_id!r}: use (NAMESPACE/)NAME-vVERSION, e.g. ditto/pong-scripted-v0"
        ) from None
    base = minari_root(root)
    target = base / dataset_id
    if target.exists():
        raise DatasetError(
            f"a Minari dataset {dataset_id!r} already exists at {target}; choose another name or version"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.ditto-export-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    spec = dataset.spec
    source = dataset.metadata.get("source", {})
    try:
        (staging / _DATA).mkdir(parents=True)
        storage = MinariStorage.new(
            staging / _DATA,
            observation_space=gym.spaces.Box(0, 255, tuple(spec.obs_shape), np.uint8),
            action_space=_action_space(spec.action),
            data_format="hdf5",
            jpeg_encoding=False,  # raw uint8 arrays: JPEG would alter the pixels
        )
        storage.update_metadata(
            {
                "dataset_id": dataset_id,
                "minari_version": minari_version,
                "algorithm_name": str(source.get("expert", "unknown")),
                "description": (
                    f"{spec.env_id} seen as {tuple(spec.obs_shape)} uint8 frames (not the env's own "
                    f"observations), exported by ditto {ditto.__version__}"
                ),
                SPEC_KEY: json.dumps(spec.to_json()),
                SOURCE_KEY: json.dumps(source),
                "ditto_version": ditto.__version__,
            }
        )
        storage.update_episodes(_episode_buffer(episode) for episode in dataset)
        if namespace is not None:
            with _datasets_path(base):
                if namespace not in list_local_namespaces():
                    create_namespace(namespace, description="datasets exported by ditto")
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


# ----------------------------------------------------------------------------- import


def _locate(path_or_id: str, root: str | Path | None) -> tuple[Path, str]:
    """(the folder holding metadata.json and the data, a name for messages)."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        for data in (path / _DATA, path):
            if (data / _METADATA).is_file():
                return data, str(path)
        raise DatasetError(f"{path} is not a Minari dataset folder (no {_DATA}/{_METADATA} in it)")
    base = minari_root(root)
    data = base / path_or_id / _DATA
    if (data / _METADATA).is_file():
        return data, path_or_id
    raise DatasetError(
        f"Minari dataset {path_or_id!r} not found: no such folder, and no {data / _METADATA} in the local "
        f"Minari datasets ({base}; set {DATASETS_PATH_VAR} to look elsewhere). ditto never downloads: "
        f"fetch it first with `minari download {path_or_id}`"
    )


def _open_storage(data: Path, metadata: dict[str, Any], name: str):
    """A MinariStorage reading `data`, with JPEG decoding on exactly when the frames were JPEG-encoded."""
    from minari.dataset.minari_storage import MinariStorage, is_image_space

    try:
        storage = MinariStorage.read(data)
    except ImportError as exc:
        raise DatasetError(
            f"{name}: its {metadata.get('data_format')!r} format needs a package that is not installed ({exc})"
        ) from None
    except Exception as exc:  # minari raises anything, from asserts to gym errors
        raise DatasetError(
            f"{name}: unreadable Minari dataset ({type(exc).__name__}: {exc})"
        ) from None
    # Minari reads a dataset whose metadata has no "jpeg_encoding" (written before the
    # option existed) as JPEG-encoded; look at how its frames were actually stored.
    if (
        "jpeg_encoding" not in metadata
        and metadata.get("data_format") == "hdf5"
        and is_image_space(storage.observation_space)
    ):
        import h5py

        with h5py.File(data / _HDF5, "r") as file:
            obs = file.get("episode_0/observations")
            raw = (
                isinstance(obs, h5py.Dataset)
                and obs.dtype == np.uint8
                and obs.shape[1:] == storage.observation_space.shape
            )
        storage = type(storage)(
            storage.data_path,
            storage.observation_space,
            storage.action_space,
            jpeg_encoding=not raw,
        )
    return storage


def _image_layout(space: gym.Space) -> str | None:
    """'hwc', 'hw' or 'chw' for a uint8 image space, None for anything else."""
    if not isinstance(space, gym.spaces.Box) or space.dtype != np.uint8:
        return None
    shape = space.shape
    if len(shape) == 2 and min(shape) >= 8:
        return "hw"
    if len(shape) == 3:
        if shape[2] in (1, 3) and min(shape[:2]) >= 8:
            return "hwc"
        if shape[0] in (1, 3) and min(shape[1:]) >= 8:
            return "chw"
    return None


def _describe(space: gym.Space) -> str:
    """A space in one short line: str() prints a Box's bounds element by element, which
    numpy wraps over several lines for a long state vector."""
    if isinstance(space, gym.spaces.Box):
        return f"Box{space.shape} {space.dtype}"
    if isinstance(space, gym.spaces.Dict):
        return "Dict(" + ", ".join(f"{k}: {_describe(v)}" for k, v in space.spaces.items()) + ")"
    if isinstance(space, gym.spaces.Tuple):
        return "Tuple(" + ", ".join(_describe(v) for v in space.spaces) + ")"
    return " ".join(str(space).split())


def _to_frames(observations: np.ndarray, layout: str, spec: EnvSpec) -> np.ndarray:
    channels, size, _ = spec.obs_shape
    images = np.asarray(observations)
    if layout == "chw":
        images = images.transpose(0, 2, 3, 1)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim == 3 and channels == 3:  # grayscale source, RGB frames wanted
        images = np.repeat(images[..., None], 3, axis=-1)
    return np.stack(
        [to_frame(np.ascontiguousarray(img), size, grayscale=channels == 1) for img in images]
    )


def _foreign_spec(
    storage, metadata: dict[str, Any], env_id: str | None, name: str
) -> tuple[EnvSpec, str]:
    """The EnvSpec and frame layout for a dataset ditto did not write."""
    space = storage.observation_space
    layout = _image_layout(space)
    if layout is None:
        raise DatasetError(
            f"{name}: observations are {_describe(space)}, not images; ditto learns from pixels "
            "and needs uint8 image observations ((H, W, 3), (H, W) or (C, H, W))"
        )
    if env_id is None and metadata.get("env_spec"):
        try:
            env_id = json.loads(metadata["env_spec"])["id"]
        except (TypeError, ValueError, KeyError):
            env_id = None
    if not env_id:
        raise DatasetError(
            f"{name} records no environment; pass the env id it was recorded in (env_id / --env)"
        )
    try:
        dataset_action = action_spec_of(storage.action_space)
    except DittoError as exc:
        raise DatasetError(f"{name}: {exc}") from None
    if env_id in gym.registry:
        try:
            spec = env_spec(env_id)
        except EnvError:
            spec = None
        if spec is not None:
            if (spec.action.kind, spec.action.n) != (dataset_action.kind, dataset_action.n):
                raise DatasetError(
                    f"{name}: actions are {dataset_action.kind}({dataset_action.n}) but {env_id} has "
                    f"{spec.action.kind}({spec.action.n}); pass the right env_id"
                )
            return spec, layout
    return EnvSpec(env_id, (1, FRAME_SIZE, FRAME_SIZE), dataset_action), layout


def import_minari(
    path_or_id: str,
    out: str | Path,
    *,
    env_id: str | None = None,
    progress: bool = True,
    root: str | Path | None = None,
    pixels: str | None = None,
) -> Dataset:
    """Write the local Minari dataset `path_or_id` as a ditto dataset at `out`.

    `path_or_id`: a folder (the dataset's, holding data/, or data/ itself), or a
    dataset id under the local Minari datasets (`root`, else
    $MINARI_DATASETS_PATH, else ~/.minari/datasets). A dataset exported by ditto
    comes back exactly, with its EnvSpec. Another's observations must be images;
    they become (1, 64, 64) frames, the env id is its env_spec's (or `env_id`),
    and the action space that of the env as ditto makes it when registered, else
    the dataset's. Re-running into the same `out` resumes an interrupted import.

    `pixels` asserts who drew the frames (`EnvSpec.pixels`, e.g. "ditto-cartpole-1"); by
    default a ditto export keeps its own label and any other dataset is labelled
    "minari:<dataset id>", never as a drawing ditto did not make.
    """
    if pixels is not None and not pixels.strip():
        raise DatasetError("--pixels needs a label, e.g. the one `ditto dataset info` shows")
    data, name = _locate(path_or_id, root)
    try:
        metadata = json.loads((data / _METADATA).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{data / _METADATA}: unreadable ({exc})") from None
    if not isinstance(metadata, dict):
        raise DatasetError(f"{data / _METADATA}: not a Minari metadata file")
    dataset_id = str(metadata.get("dataset_id") or name)
    total = metadata.get("total_episodes", 0)
    if not isinstance(total, int) or total < 1:
        raise DatasetError(f"Minari dataset {name} holds no episodes")
    storage = _open_storage(data, metadata, name)

    layout = None
    if SPEC_KEY in metadata:
        try:
            spec = EnvSpec.from_json(json.loads(metadata[SPEC_KEY]))
        except (TypeError, ValueError, KeyError, DittoError) as exc:
            raise DatasetError(f"{data / _METADATA}: malformed {SPEC_KEY} ({exc})") from None
        if env_id is not None and env_id != spec.env_id:
            raise DatasetError(f"{name} was exported by ditto from {spec.env_id}, not {env_id}")
        if pixels is not None and pixels != spec.pixels:
            raise DatasetError(
                f"{name} was exported by ditto with frames drawn by {spec.pixels!r}, not {pixels!r}"
            )
    else:
        spec, layout = _foreign_spec(storage, metadata, env_id, name)
        # The env's own label would claim a drawing ditto did not make (issue 26).
        spec = dataclasses.replace(spec, pixels=pixels or f"minari:{dataset_id}")

    source = {"minari": dataset_id}
    writer = DatasetWriter(out, spec, source)
    if writer.metadata["source"] != source:
        raise DatasetError(
            f"{out} already holds episodes from {writer.metadata['source']}; write to a new directory"
        )
    done = writer.num_episodes
    bar = tqdm(
        total=total, initial=done, desc=f"import {dataset_id}", unit="ep", disable=not progress
    )
    index = done
    try:
        for raw in storage.get_episodes(range(done, total)):
            writer.add(_episode(raw, spec, layout))
            index += 1
            bar.update(1)
    except DittoError as exc:
        raise DatasetError(f"{name} episode {index}: {exc}") from None
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(
            f"{name} episode {index}: unreadable ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        bar.close()
    return Dataset(out)


def _episode(raw: dict[str, Any], spec: EnvSpec, layout: str | None) -> Episode:
    observations = raw["observations"]
    if not isinstance(observations, np.ndarray):
        raise DatasetError(f"observations are a {type(observations).__name__}, not an image array")
    frames = observations if layout is None else _to_frames(observations, layout, spec)
    actions = np.asarray(raw["actions"])
    if spec.action.is_discrete:
        if actions.ndim == 2 and actions.shape[1] == 1:
            actions = actions[:, 0]
        if np.issubdtype(actions.dtype, np.integer):
            actions = actions.astype(np.int64)
    else:
        actions = actions.astype(np.float32)
    terminations = np.asarray(raw["terminations"], dtype=bool)
    truncations = np.asarray(raw["truncations"], dtype=bool)
    return Episode(
        observations=frames,
        actions=actions,
        rewards=np.asarray(raw["rewards"]).astype(np.float32),
        terminated=bool(terminations[-1]) if terminations.size else False,
        truncated=bool(truncations[-1]) if truncations.size else False,
    )
