"""Readers (and, where a format is written back, writers) for every annotation format we use.

One module per dataset family; each exposes a :class:`~lmklib.data.sample.LandmarkDataset`
subclass whose docstring documents the expected folder layout.
"""
