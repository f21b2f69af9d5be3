"""Benchmarks: each compares the project's way with a baseline measured in the same run."""
