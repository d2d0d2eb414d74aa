"""Metrics: the spectrum (effective rank), the geometry suite and the linear/kNN probes.
NumPy only; imports the ground floor, runtime and data."""
