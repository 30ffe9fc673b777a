"""The throwaway source PostgreSQL of the tests: cloudmig.harness.source, plus what only tests need
(skipping a test whose PostgreSQL major is not usable here)."""

from __future__ import annotations

import os
from pathlib import Path

from cloudmig.harness.source import (
    DEFAULT_HBA,
    DEFAULT_MAJOR,
    DEFAULT_PASSWORD,
    SUPERUSER,
    SourceCluster,
    bin_dirs_for_tests,
    free_port,
    make_base_dir,
    make_settings,
    os_user_for_tests,
    wait_for,
)
from cloudmig.pg.binaries import PgBinariesNotFound, find_basebackup, find_bin_dir
from cloudmig.pg.runner import PgCommandError, run

# Exercises every quoting layer: SQL literal, libpq passfile, conninfo, URL query strings.
TRICKY_PASSWORD = "p'a\"s s\\w:o;r=d ü€ %&?#"

__all__ = [
    "DEFAULT_HBA",
    "DEFAULT_MAJOR",
    "DEFAULT_PASSWORD",
    "SUPERUSER",
    "TRICKY_PASSWORD",
    "SourceCluster",
    "bin_dirs_for_tests",
    "free_port",
    "make_base_dir",
    "make_settings",
    "os_user_for_tests",
    "require_migratable_major",
    "runnable_bin_dir",
    "usable_bin_dir",
    "wait_for",
]


def usable_bin_dir(major: int) -> tuple[Path | None, str]:
    """(bin dir of `major`, "") when the PostgreSQL OS user can run its server, else (None, why):
    absent, or not executable by that user (e.g. binaries in a virtualenv under a directory it
    cannot traverse)."""
    try:
        bin_dir = find_bin_dir(major, bin_dirs_for_tests())
        run([bin_dir / "postgres", "--version"], user=os_user_for_tests(), timeout=30)
    except (PgBinariesNotFound, PgCommandError) as exc:
        return (
            None,
            f"PostgreSQL {major} binaries are not usable here ({exc}); install them with tools/install-pg-majors {major}",
        )
    return bin_dir, ""


def runnable_bin_dir(major: int) -> Path:
    """The bin dir of `major`, or skip the test saying why (see usable_bin_dir)."""
    import pytest

    bin_dir, why = usable_bin_dir(major)
    if bin_dir is None:
        pytest.skip(why)
    return bin_dir


def require_migratable_major(major: int) -> None:
    """Skip (or fail, where `major` is in CLOUDMIG_TEST_REQUIRE_MAJORS: CI lists them all), saying
    why, unless this machine can run a migration of `major`: its server and a pg_basebackup for it."""
    import pytest

    bin_dir, missing = usable_bin_dir(major)
    if bin_dir is not None:
        try:
            find_basebackup(major, bin_dirs_for_tests(), user=os_user_for_tests())
            return
        except PgBinariesNotFound as exc:
            missing = f"PostgreSQL {major}: {exc}"
    if major in {int(m) for m in os.environ.get("CLOUDMIG_TEST_REQUIRE_MAJORS", "").split()}:
        pytest.fail(f"{missing} (required by CLOUDMIG_TEST_REQUIRE_MAJORS)")
    pytest.skip(missing)
