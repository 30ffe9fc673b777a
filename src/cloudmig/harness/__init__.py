"""Throwaway PostgreSQL sources and cloudmig services on this machine: one place that makes them,
for `cloudmig demo`, the tests and the benchmarks."""
