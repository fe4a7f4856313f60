"""Datasets shipped with the engine (package data), built by `build_datasets.py`."""
