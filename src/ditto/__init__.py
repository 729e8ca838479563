"""ditto: offline imitation learning from pixels with world models (DITTO and baselines)."""

__version__ = "0.1.0"
