"""`cloudmig demo` runs to the end: throwaway source, service, instance, assessment, migration,
switchover, row counts on both sides, clean-up."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.pgcluster import DEFAULT_MAJOR

pytestmark = pytest.mark.e2e


def test_demo_runs_to_the_end() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "cloudmig", "demo", "--interval", "0.5"],
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    out = r.stdout
    assert r.returncode == 0, f"{out}\n{r.stderr}"
    # Every step, in order.
    steps = [
        rf"starting a throwaway source PostgreSQL {DEFAULT_MAJOR} .* in (/tmp/cloudmig-demo-\S+)",
        r"cloudmig service on http://127\.0\.0\.1:(\d+)",
        r"created instance (pgm-[a-z0-9]{16})",
        r"running the assessment",
        r"Check rds databases",
        r"stage increment  replication streaming  status running",
        r"writes stopped; switching over",
        r"stage success  replication finish  status succeeded",
        r"row counts match; pgm-[a-z0-9]{16} is the new primary",
        r"cleaning up",
        r"==> done",
    ]
    pos = 0
    found = []
    for pattern in steps:
        m = re.compile(pattern).search(out, pos)
        assert m, f"missing {pattern!r} after position {pos}:\n{out}"
        found.append(m)
        pos = m.end()
    for table in ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"):
        assert re.search(rf"{table}\s*│\s*(\d+)\s*│\s*\1\s*│ ok", out), out
    assert "DIFFERENT" not in out

    # Cleaned up: the files are gone and the service no longer listens.
    assert not Path(found[0].group(1)).exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", int(found[1].group(1)))) != 0
