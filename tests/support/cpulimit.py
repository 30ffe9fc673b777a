"""A CPU quota on a source's processes (a cgroup with cpu.max or cpu.cfs_quota_us): a slow source
CPU, on demand. Needs root and a writable cgroup cpu controller; raises CpuLimitUnavailable where
there is none, for the test to skip with the reason."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

V1 = Path("/sys/fs/cgroup/cpu")  # cgroup v1's cpu hierarchy
V2_MOUNTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
PERIOD_US = 100_000


class CpuLimitUnavailable(Exception):
    pass


def _v2_root() -> Path | None:
    for root in V2_MOUNTS:
        controllers = root / "cgroup.controllers"
        if controllers.exists() and "cpu" in controllers.read_text().split():
            return root
    return None


def _make_group(share: float) -> tuple[Path, Path]:
    """A new cgroup limited to `share` of one CPU, and the group its processes go back to."""
    name = f"cloudmig-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    quota = max(int(share * PERIOD_US), 1000)
    parent = V1 if (V1 / "cpu.cfs_quota_us").exists() else _v2_root()
    if parent is None:
        raise CpuLimitUnavailable("no cgroup cpu controller (v1 or v2) on this machine")
    group = parent / name
    try:
        if parent == V1:
            group.mkdir()
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (parent / "cgroup.subtree_control").write_text("+cpu")
            group.mkdir()
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
    except OSError as exc:
        with contextlib.suppress(OSError):
            group.rmdir()
        raise CpuLimitUnavailable(f"cannot make a cgroup with a CPU quota in {parent}: {exc}") from exc
    return group, parent


def _move(pids: list[int], group: Path) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):
            (group / "cgroup.procs").write_text(str(pid))


class CpuQuota:
    """A cgroup limited to a share of one CPU: what `limit` moves into it (processes, and what they
    fork from then on) runs no faster until `release`."""

    def __init__(self, group: Path, parent: Path) -> None:
        self.group, self.parent = group, parent

    def limit(self, pids: list[int]) -> None:
        _move(pids, self.group)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            _move([int(p) for p in (self.group / "cgroup.procs").read_text().split()], self.parent)


@contextlib.contextmanager
def cpu_quota(share: float) -> Iterator[CpuQuota]:
    """A CpuQuota of `share` of one CPU for the block; released and removed after it."""
    quota = CpuQuota(*_make_group(share))
    try:
        yield quota
    finally:
        quota.release()
        with contextlib.suppress(OSError):
            quota.group.rmdir()
