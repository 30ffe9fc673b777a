"""Benchmarks of cloudmig against its baselines (python -m bench); see docs/benchmarks.md."""
