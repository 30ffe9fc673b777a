"""Session-wide: the PostgreSQL majors tools/install-pg-majors installed reach cloudmig (this
process and every service a test starts) through CLOUDMIG_PG_BIN_DIRS, unless that is set already."""

from __future__ import annotations

from tests.support.majors import export_bin_dirs

export_bin_dirs()
