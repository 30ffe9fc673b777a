"""`cloudmig serve` and `cloudmig keys` as a user runs them: data dir checks, keys shown once, sealed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.service import free_port


def _cloudmig(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cloudmig", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.skipif(
    os.geteuid() != 0, reason="the PostgreSQL OS user only matters when cloudmig runs as root"
)
def test_unreachable_data_dir_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    res = _cloudmig(
        "serve",
        "--port",
        str(free_port()),
        "--data-dir",
        str(private / "data"),
        env={"CLOUDMIG_RUNTIME_DIR": str(tmp_path / "run")},
    )
    assert res.returncode == 3, res.stderr
    assert "not reachable by OS user postgres" in res.stderr
    assert res.stderr.count("\n") <= 3, "one clear message, not a traceback"


@pytest.mark.skipif(
    os.geteuid() != 0, reason="the PostgreSQL OS user only matters when cloudmig runs as root"
)
def test_data_dir_created_by_cloudmig_is_fixed_up(pg_base_dir: Path) -> None:
    data = pg_base_dir / "fixup" / "data"
    data.parent.mkdir(mode=0o711)
    data.mkdir(mode=0o700)
    os.chmod(data, 0o700)
    from cloudmig.runtime import build_context
    from cloudmig.settings import load_settings

    build_context(load_settings(data_dir=data, runtime_dir=pg_base_dir / "fixup" / "run"))
    assert stat.S_IMODE(data.stat().st_mode) & 0o011 == 0o011
    assert stat.S_IMODE((data / "cloudmig.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "secret.key").stat().st_mode) == 0o600


def test_keys_create_prints_the_secret_once_and_stores_it_sealed(tmp_path: Path) -> None:
    env = {"CLOUDMIG_RUNTIME_DIR": str(tmp_path / "run")}
    res = _cloudmig("keys", "create", "--data-dir", str(tmp_path / "d"), "--json", env=env)
    assert res.returncode == 0, res.stderr
    key = json.loads(res.stdout)
    assert key["AccessKeyId"].startswith("LTAI") and len(key["AccessKeySecret"]) >= 30
    listed = _cloudmig("keys", "list", "--data-dir", str(tmp_path / "d"), "--json", env=env)
    assert key["AccessKeyId"] in listed.stdout and key["AccessKeySecret"] not in listed.stdout
    for p in (tmp_path / "d").rglob("*"):
        if p.is_file():
            assert key["AccessKeySecret"].encode() not in p.read_bytes(), p
    revoked = _cloudmig("keys", "revoke", key["AccessKeyId"], "--data-dir", str(tmp_path / "d"), env=env)
    assert revoked.returncode == 0
    assert (
        "Inactive" in _cloudmig("keys", "list", "--data-dir", str(tmp_path / "d"), "--json", env=env).stdout
    )
    unknown = _cloudmig("keys", "revoke", "LTAInope", "--data-dir", str(tmp_path / "d"), env=env)
    assert unknown.returncode == 1 and "no access key" in unknown.stderr
