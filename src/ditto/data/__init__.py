"""Recorded episodes: the Episode type, datasets on disk, window sampling, collection."""

from ditto.data.dataset import Dataset, DatasetWriter, EpisodeInfo, open_datasets, verify_dataset
from ditto.data.episode import Episode
from ditto.data.sampler import ChunkSampler, WindowBatch, WindowSampler

__all__ = [
    "ChunkSampler",
    "Dataset",
    "DatasetWriter",
    "Episode",
    "EpisodeInfo",
    "WindowBatch",
    "WindowSampler",
    "open_datasets",
    "verify_dataset",
]
