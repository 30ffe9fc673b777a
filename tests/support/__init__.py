"""Helpers shared by the func and e2e tests (real PostgreSQL clusters)."""
