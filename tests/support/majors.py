"""Where the tests find PostgreSQL majors besides the distribution's own (no cloudmig imports here:
tests/conftest.py uses it before anything reads the settings).

tools/install-pg-majors puts each major into <CLOUDMIG_PG_MAJORS_DIR>/<major> (by default
/opt/cloudmig-pg as root, ~/.local/share/cloudmig-pg otherwise);
export_bin_dirs() hands those prefixes to cloudmig through CLOUDMIG_PG_BIN_DIRS, which the services
the tests start inherit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MAJORS_DIR = Path(
    os.environ.get("CLOUDMIG_PG_MAJORS_DIR")
    or ("/opt/cloudmig-pg" if os.geteuid() == 0 else os.path.expanduser("~/.local/share/cloudmig-pg"))
)


def installed_major_prefixes(majors_dir: Path = MAJORS_DIR) -> list[Path]:
    """The prefixes tools/install-pg-majors made (<dir>/<major> holding bin/), oldest major first."""
    if not majors_dir.is_dir():
        return []
    found = [p for p in majors_dir.iterdir() if p.name.isdigit() and (p / "bin" / "postgres").is_file()]
    return sorted(found, key=lambda p: int(p.name))


def export_bin_dirs() -> None:
    """Set CLOUDMIG_PG_BIN_DIRS to the installed prefixes, unless the environment already sets it."""
    if "CLOUDMIG_PG_BIN_DIRS" not in os.environ:
        os.environ["CLOUDMIG_PG_BIN_DIRS"] = json.dumps([str(p) for p in installed_major_prefixes()])
