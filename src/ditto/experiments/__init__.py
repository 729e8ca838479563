"""Experiment grids, the demo pipeline and their reports."""
