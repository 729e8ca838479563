"""Episode datasets on disk: a directory of .npy files plus one metadata.json.

    DIR/metadata.json                       env spec, source, per-episode stats, checksums
    DIR/episodes/000000.observations.npy    (T+1, C, H, W) uint8
    DIR/episodes/000000.actions.npy         (T,) int64 or (T, A) float32
    DIR/episodes/000000.rewards.npy         (T,) float32

Episode files are written first and metadata.json last, each atomically, so an
interrupted collection leaves every episode listed in metadata.json complete
and readable; files of an episode that never made it into the metadata are
ignored (and overwritten by the next writer). Reading is lazy: observations
are memory-mapped, so a dataset larger than RAM can be sampled.

metadata.json records the sha256 of every episode file it lists ("checksums", in
the same atomic write that lists the episode): `verify_dataset` (`ditto dataset
verify`) reads every file back and reports the ones that changed or are missing.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import ditto
from ditto.data.episode import Episode, Segment, check_segments
from ditto.errors import DatasetError, DittoError
from ditto.io import (
    CHECKSUMS,
    atomic_save_npy,
    atomic_write_json,
    check_directory_path,
    checksum_problem,
    holds_files,
    sha256_file,
)
from ditto.specs import EnvSpec

FORMAT = "ditto-episodes"
FORMAT_VERSION = 1
METADATA = "metadata.json"
_FIELDS = ("observations", "actions", "rewards")


def _episode_file(root: Path, index: int, field: str) -> Path:
    return root / "episodes" / f"{index:06d}.{field}.npy"


@dataclass(frozen=True)
class EpisodeInfo:
    """What metadata.json records of one episode."""

    index: int
    length: int
    total_return: float
    terminated: bool
    truncated: bool
    segments: tuple[Segment, ...] | None = None  # play data only; absent from other datasets

    def to_json(self) -> dict[str, Any]:
        data = {
            "index": self.index,
            "length": self.length,
            "return": self.total_return,
            "terminated": self.terminated,
            "truncated": self.truncated,
        }
        if self.segments is not None:
            data["segments"] = [segment.to_json() for segment in self.segments]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EpisodeInfo:
        whole = all(isinstance(data[k], int) and data[k] >= 0 for k in ("index", "length"))
        flags = all(isinstance(data[k], bool) for k in ("terminated", "truncated"))
        total = data["return"]
        number = isinstance(total, int | float) and not isinstance(total, bool)
        if not (whole and flags and number and math.isfinite(total)):
            raise ValueError(
                "an episode's index and length are whole numbers, its return a finite number and "
                f"terminated and truncated true or false; got {data}"
            )
        segments = None
        if data.get("segments") is not None:
            segments = tuple(Segment.from_json(segment) for segment in data["segments"])
            try:
                check_segments(segments, data["length"])
            except DittoError as exc:
                raise ValueError(f"episode {data['index']}: {exc}") from None
        return cls(
            data["index"],
            data["length"],
            data["return"],
            data["terminated"],
            data["truncated"],
            segments,
        )


class DatasetWriter:
    """Appends episodes to a dataset directory, atomically, one episode at a time.

    Opening an existing dataset appends to it (resuming an interrupted
    collection) if its env spec matches; `source` describes how the episodes
    were made (expert spec, epsilon, seed) and is kept from the first writer.
    A new dataset's directory is made at once (a path that cannot be one fails
    before any work), its metadata with the first episode, so a collection or
    import that fails before that leaves an empty directory, which any retry may use.
    """

    def __init__(self, root: str | Path, spec: EnvSpec, source: dict[str, Any] | None = None):
        self.root = Path(root)
        self.spec = spec
        if (self.root / METADATA).exists():
            existing = Dataset(self.root, allow_empty=True)
            spec.check_compatible(existing.spec, f"existing dataset {self.root}")
            self.metadata = existing.metadata
        else:
            check_directory_path(self.root)
            if self.root.exists() and holds_files(self.root):
                raise DatasetError(
                    f"{self.root} exists and is not a ditto dataset (no {METADATA}); choose an empty or new directory"
                )
            self.metadata = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "ditto_version": ditto.__version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "env": spec.to_json(),
                "source": dict(source or {}),
                "episodes": [],
                CHECKSUMS: {},
            }
            self.root.mkdir(parents=True, exist_ok=True)

    @property
    def num_episodes(self) -> int:
        return len(self.metadata["episodes"])

    def add(self, episode: Episode) -> EpisodeInfo:
        c, h, w = self.spec.obs_shape
        if episode.observations.shape[1:] != (c, h, w):
            raise DatasetError(
                f"episode frames have shape {episode.observations.shape[1:]}, the dataset's are {(c, h, w)}"
            )
        self.spec.action.validate(episode.actions, "episode")
        index = self.num_episodes
        if index == 0:
            # Before the first episode's files: a crash mid-write leaves a dataset to resume.
            atomic_write_json(self.root / METADATA, self.metadata)
        actions = episode.actions.astype(np.int64 if self.spec.action.is_discrete else np.float32)
        arrays = {
            "observations": episode.observations,
            "actions": actions,
            "rewards": episode.rewards.astype(np.float32),
        }
        # A dataset from before checksums were recorded gets them for its new episodes only.
        checksums = self.metadata.setdefault(CHECKSUMS, {})
        for field in _FIELDS:
            path = _episode_file(self.root, index, field)
            atomic_save_npy(path, arrays[field])
            checksums[path.relative_to(self.root).as_posix()] = sha256_file(path)
        info = EpisodeInfo(
            index,
            episode.length,
            episode.total_return,
            bool(episode.terminated),
            bool(episode.truncated),
            episode.segments,
        )
        self.metadata["episodes"].append(info.to_json())
        atomic_write_json(self.root / METADATA, self.metadata)
        return info


class Dataset(Sequence[Episode]):
    """A dataset directory, opened lazily: `ds[i]` is an Episode whose observations are memory-mapped.

    Opening checks the metadata and every episode's file headers (shape, dtype)
    and scans actions and rewards (small) for NaN and out-of-space values; frames
    are not read. Problems raise DatasetError naming the file.
    """

    def __init__(self, root: str | Path, *, allow_empty: bool = False):
        self.root = Path(root)
        self.metadata = _read_metadata(self.root)
        try:
            self.spec = EnvSpec.from_json(self.metadata["env"])
            self.infos = [EpisodeInfo.from_json(e) for e in self.metadata["episodes"]]
        except (KeyError, TypeError, ValueError, DittoError) as exc:
            raise DatasetError(f"{self.root / METADATA}: malformed metadata ({exc})") from None
        twice = [i for i, n in Counter(info.index for info in self.infos).items() if n > 1]
        if twice:
            raise DatasetError(
                f"{self.root / METADATA}: malformed metadata (episode {twice[0]} listed twice)"
            )
        if not self.infos and not allow_empty:
            raise DatasetError(f"{self.root} holds no episodes; collect some with `ditto collect`")
        self._cache: dict[int, Episode] = {}
        for info in self.infos:
            self._cache[info.index] = self._open_episode(info)

    def __fspath__(self) -> str:  # a Dataset stands for its directory wherever a path is expected
        return str(self.root)

    def _open_episode(self, info: EpisodeInfo) -> Episode:
        arrays = {}
        for field in _FIELDS:
            path = _episode_file(self.root, info.index, field)
            try:
                arrays[field] = np.load(
                    path, mmap_mode="r" if field == "observations" else None, allow_pickle=False
                )
            except FileNotFoundError:
                raise DatasetError(f"{path}: missing (the dataset is incomplete)") from None
            except (ValueError, OSError, EOFError) as exc:  # EOFError: an empty file
                raise DatasetError(f"{path}: unreadable ({exc})") from None
        obs = arrays["observations"]
        if (
            obs.dtype != np.uint8
            or obs.shape[1:] != tuple(self.spec.obs_shape)
            or obs.shape[0] != info.length + 1
        ):
            raise DatasetError(
                f"{_episode_file(self.root, info.index, 'observations')}: frames are {obs.dtype} {obs.shape}, "
                f"expected uint8 {(info.length + 1, *self.spec.obs_shape)}"
            )
        where = str(_episode_file(self.root, info.index, "actions"))
        try:
            self.spec.action.validate(arrays["actions"], where)
            episode = Episode(
                obs,
                arrays["actions"],
                arrays["rewards"],
                info.terminated,
                info.truncated,
                info.segments,
            )
        except DittoError as exc:
            raise DatasetError(f"{where.rsplit('.actions', 1)[0]}: {exc}") from None
        return episode

    def __len__(self) -> int:
        return len(self.infos)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._cache[self.infos[index].index]

    def __iter__(self) -> Iterator[Episode]:
        return (self[i] for i in range(len(self)))

    @property
    def env_id(self) -> str:
        return self.spec.env_id

    @property
    def lengths(self) -> np.ndarray:
        return np.array([info.length for info in self.infos], dtype=np.int64)

    @property
    def returns(self) -> np.ndarray:
        return np.array([info.total_return for info in self.infos], dtype=np.float64)

    def summary(self) -> dict[str, Any]:
        """The dataset at a glance (what `ditto dataset info --json` prints)."""
        returns = self.returns
        empty = len(returns) == 0
        return {
            "path": str(self.root),
            "env_id": self.env_id,
            "episodes": len(self),
            "steps": int(self.lengths.sum()),
            "return_mean": None if empty else float(returns.mean()),
            "return_std": None if empty else float(returns.std()),
            "return_min": None if empty else float(returns.min()),
            "return_max": None if empty else float(returns.max()),
            "length_mean": None if empty else float(self.lengths.mean()),
            "obs_shape": list(self.spec.obs_shape),
            "pixels": self.spec.pixels,
            "action": self.spec.action.to_json(),
            "source": self.metadata.get("source", {}),
            "format_version": self.metadata["format_version"],
            **self._segment_counts(),
        }

    def _segment_counts(self) -> dict[str, int]:
        """Play data's segments: how many, how many completed, how many keep their mission
        text (nothing for datasets without segments)."""
        if all(info.segments is None for info in self.infos):
            return {}
        segments = [s for info in self.infos for s in info.segments or ()]
        return {
            "segments": len(segments),
            "segments_completed": sum(s.completed for s in segments),
            "segments_annotated": sum(s.annotated for s in segments),
        }


def _read_metadata(root: Path) -> dict[str, Any]:
    path = root / METADATA
    if root.is_file():
        raise DatasetError(f"{root} is a file; give the dataset's directory")
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset directory")
    if not path.is_file():
        raise DatasetError(
            f"{path}: missing; {root} is not a ditto dataset (make one with `ditto collect`)"
        )
    try:
        metadata = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise DatasetError(f"{path}: not a ditto dataset metadata file")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"{path}: format version {metadata.get('format_version')} is not supported "
            f"(this ditto reads version {FORMAT_VERSION})"
        )
    return metadata


def verify_dataset(root: str | Path) -> list[str]:
    """One line per episode file of the dataset at `root` that is missing or changed since it
    was written (checked against the sha256 metadata.json records); empty when all match.
    Files of episodes metadata.json does not list are not the dataset's, and not checked."""
    root = Path(root)
    metadata = _read_metadata(root)
    checksums = metadata.get(CHECKSUMS)
    if not isinstance(checksums, dict):
        return [f"{root / METADATA}: records no checksums (written by an older ditto)"]
    try:
        indices = [EpisodeInfo.from_json(e).index for e in metadata["episodes"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{root / METADATA}: malformed metadata ({exc})") from None
    problems = []
    for index in indices:
        for field in _FIELDS:
            path = _episode_file(root, index, field)
            problem = checksum_problem(path, checksums.get(path.relative_to(root).as_posix()))
            if problem is not None:
                problems.append(problem)
    return problems


def open_datasets(roots: Sequence[str | Path]) -> list[Dataset]:
    """Open several datasets that must describe the same env (frames and actions), with
    frames drawn the same way (`EnvSpec.pixels`)."""
    if not roots:
        raise DatasetError("no dataset given")
    datasets = [Dataset(root) for root in roots]
    first = datasets[0]
    for other in datasets[1:]:
        what = f"dataset {other.root} (mixed with {first.root})"
        first.spec.check_compatible(replace(other.spec, pixels=first.spec.pixels), what)
        if other.spec.pixels != first.spec.pixels:
            _refuse_mixed_pixels(first, other)
    return datasets


def _refuse_mixed_pixels(first: Dataset, other: Dataset) -> None:
    """Frames drawn differently would teach a world model two looks of one env; only the
    user can know that an import's frames match another's, and says so when importing."""
    labels = [first.spec.pixels, other.spec.pixels]
    own = [label for label in labels if not label.startswith("minari:")]
    raise DatasetError(
        f"dataset {other.root} has frames drawn by {other.spec.pixels!r}, {first.root} by "
        f"{first.spec.pixels!r}; ditto does not mix them (if the frames do match, import again "
        f"with `ditto dataset import-minari ... --pixels {(own or labels)[0]}` to say so)"
    )
