"""Shared pieces of the benchmarks: modes, a workspace that always cleans up, statistics, samplers,
the machine description, and thin wrappers over tests/support (service, source clusters, flows)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `tests.support` is imported, not copied
    sys.path.insert(0, str(REPO))

from tests.support import flows  # noqa: E402
from tests.support.pgcluster import DEFAULT_MAJOR, SourceCluster, make_base_dir, os_user_for_tests  # noqa: E402
from tests.support.service import Service  # noqa: E402

from cloudmig.pg import ctl  # noqa: E402
from cloudmig.pg.binaries import find_bin_dir  # noqa: E402
from cloudmig.pg.files import make_dir  # noqa: E402
from cloudmig.pg.runner import OsUser  # noqa: E402

MIGRATION_ACCOUNT = "migratetest"
MIGRATION_PASSWORD = flows.MIGRATION_PASSWORD
# The distribution's PostgreSQL (15 on Debian 12, 17 on Debian 13): what `cloudmig serve` uses there.
PG_MAJOR = DEFAULT_MAJOR

# What an operator gets without configuration (cloudmig.settings defaults): the harness in
# tests/support/service.py speeds the engine up for tests; a benchmark measures the product.
PRODUCT_ENGINE_ENV = {
    "CLOUDMIG_ENGINE_TICK_SECONDS": "1.0",
    "CLOUDMIG_OBSERVE_SECONDS": "2.0",
    "CLOUDMIG_LOG_LEVEL": "warning",
}


# ---- modes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    """Sizes and repetitions; `quick` is the CI smoke check (about a minute), full the real thing."""

    quick: bool
    copy_scale: int
    copy_repeats: int  # cloudmig and raw pg_basebackup
    logical_repeats: int  # pgcopydb clone and pg_dump | pg_restore
    catchup_scale: int
    catchup_rate_tps: int  # pgbench -R: a steady application write load
    catchup_after_seconds: float  # load keeps running this long after streaming is reached
    switch_repeats: int
    store_tasks: int
    describe_samples: int
    rps_seconds: float
    rps_clients: int
    concurrency: int
    cpu_window_seconds: float
    control_idle_seconds: float  # the full run covers two post-switch check periods (10 s each)

    @classmethod
    def make(cls, quick: bool, **overrides: Any) -> Mode:
        if quick:
            base = cls(
                quick=True,
                copy_scale=10,
                copy_repeats=1,
                logical_repeats=1,
                catchup_scale=5,
                catchup_rate_tps=300,
                catchup_after_seconds=3,
                switch_repeats=1,
                store_tasks=10_000,
                describe_samples=60,
                rps_seconds=2,
                rps_clients=4,
                concurrency=2,
                cpu_window_seconds=5,
                control_idle_seconds=5,
            )
        else:
            base = cls(
                quick=False,
                copy_scale=100,
                copy_repeats=5,
                logical_repeats=3,
                catchup_scale=50,
                catchup_rate_tps=1000,
                catchup_after_seconds=30,
                switch_repeats=7,
                store_tasks=10_000,
                describe_samples=1000,
                rps_seconds=15,
                rps_clients=8,
                concurrency=8,
                cpu_window_seconds=30,
                control_idle_seconds=21,
            )
        values = asdict(base)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# ---- workspace -----------------------------------------------------------------------------------


def warm_page_cache(directory: Path, nbytes: int) -> float:
    """Write `nbytes` into a file in `directory` and remove it; returns the seconds it took.

    On a VM that hands freed memory back to its host (free page reporting, as on this kind of
    machine), the first write into memory left idle for a few seconds costs a fault on the host per
    page: 1 GB written with dd took 1.4-2.5 s after 8-10 s idle and 0.3 s right after another file
    of that size was removed (anonymous memory touched and freed did not help: 1.3 s). A copy run
    right after this starts from the same warm memory whichever method it is, instead of paying
    for how long ago the previous run freed its own."""
    path = directory / f"warm-{os.getpid()}"
    chunk = b"\0" * (1 << 20)
    t = time.monotonic()
    try:
        with open(path, "wb") as f:
            for _ in range(max(nbytes >> 20, 1)):
                f.write(chunk)
    finally:
        path.unlink(missing_ok=True)
    return time.monotonic() - t


class Workspace:
    """A 0711 base directory in /tmp (the PostgreSQL OS user must traverse it) and a stack of cleanups
    that runs in reverse order when the benchmark ends, whether it succeeded or not."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.base = make_base_dir(prefix=f"cloudmig-bench-{name}-")
        self.user: OsUser | None = os_user_for_tests()
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._stack.close()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def defer(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run fn(*args) at cleanup; its errors are reported, not raised (cleanup goes on)."""

        def guarded() -> None:
            try:
                fn(*args, **kwargs)
            except Exception as exc:
                log(f"cleanup {getattr(fn, '__name__', fn)} failed: {exc}")

        self._stack.callback(guarded)

    def subdir(self, prefix: str) -> Path:
        """A fresh root-owned 0711 directory (PostgreSQL makes its own 0700 dirs below it)."""
        d = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.base))
        os.chmod(d, 0o711)
        return d

    def pg_dir(self, prefix: str, *subdirs: str) -> Path:
        """A fresh empty 0700 directory owned by the PostgreSQL OS user, with the given empty 0700
        subdirectories (e.g. pgdata, sock) of the same owner."""
        d = self.subdir(prefix) / "d"
        make_dir(d, user=self.user)
        for name in subdirs:
            make_dir(d / name, user=self.user)
        return d

    # ---- clusters and services -----------------------------------------------------------------

    def source(self, scale: int, *, settings: dict[str, object] | None = None) -> SourceCluster:
        """A self-managed source: initdb, start, pgbench -i -s scale, the migration account."""
        src = SourceCluster.create(self.subdir("src"), settings=settings or {})
        self.defer(src.destroy)
        t0 = time.monotonic()
        src.pgbench_init(scale=scale)
        log(f"  source :{src.port} pgbench scale {scale} ready in {time.monotonic() - t0:.1f} s")
        src.create_migration_account(MIGRATION_ACCOUNT, MIGRATION_PASSWORD)
        return src

    def sources(self, n: int, scale: int) -> list[SourceCluster]:
        """n sources made in parallel (initdb and pgbench -i are subprocesses)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(n, 4)) as pool:
            futures = [pool.submit(self.source, scale) for _ in range(n)]
            return [f.result() for f in futures]

    def plain_cluster(self) -> SourceCluster:
        """An empty cluster (e.g. the target of the logical tools)."""
        c = SourceCluster.create(self.subdir("tgt"))
        self.defer(c.destroy)
        return c

    def service(self, **env: str) -> Service:
        svc = Service(self.subdir("svc"), extra_env={**PRODUCT_ENGINE_ENV, **env})
        self.defer(stop_service, svc)
        svc.start()
        return svc


def stop_service(svc: Service) -> None:
    """Stop `cloudmig serve`, then every instance cluster it left running (serve does not stop them)."""
    try:
        svc.stop()
    finally:
        instances = svc.data_dir / "instances"
        if instances.is_dir():
            user = os_user_for_tests()
            bin_dir = find_bin_dir(PG_MAJOR)
            for pgdata in instances.glob("*/pgdata"):
                if (pgdata / "postmaster.pid").exists():
                    with contextlib.suppress(Exception):
                        ctl.stop(bin_dir, pgdata, user=user, mode="immediate")


def bin_dir() -> Path:
    return find_bin_dir(PG_MAJOR)


# ---- statistics ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """n, median, min, max, mean, stdev and spread (max-min relative to the median)."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"n": 0}
    med = statistics.median(xs)
    return {
        "n": len(xs),
        "median": med,
        "min": min(xs),
        "max": max(xs),
        "mean": statistics.fmean(xs),
        "stdev": statistics.stdev(xs) if len(xs) > 1 else 0.0,
        "p25": percentile(xs, 25),
        "p75": percentile(xs, 75),
        "spread_pct": (max(xs) - min(xs)) / med * 100 if med else 0.0,
        "values": xs,
    }


def fmt_s(summary: dict[str, Any], unit: str = "s", digits: int = 2) -> str:
    """'4.21 s (3.90-4.80, n=5)': median, then min-max over the repetitions."""
    if not summary or not summary.get("n"):
        return "-"
    med, lo, hi, n = summary["median"], summary["min"], summary["max"], summary["n"]
    if n == 1:
        return f"{med:.{digits}f} {unit} (n=1)"
    return f"{med:.{digits}f} {unit} ({lo:.{digits}f}-{hi:.{digits}f}, n={n})"


def goal(
    name: str, target: str, value: float | None, met: bool | None, note: str = "", *, source: str = "issue #7"
) -> dict[str, Any]:
    """A goal is reported, never asserted. `source`: where the target comes from (the issue, or a
    yardstick the benchmark proposes)."""
    return {"name": name, "target": target, "value": value, "met": met, "note": note, "source": source}


# ---- sampling ------------------------------------------------------------------------------------


class Sampler:
    """Calls fn() every `interval` seconds in a thread; keeps (seconds since start, value) pairs.
    A sample that raises is skipped (a directory being created, a server not up yet)."""

    def __init__(self, fn: Callable[[], Any], interval: float, t0: float | None = None) -> None:
        self.fn = fn
        self.interval = interval
        self.t0 = t0 if t0 is not None else time.monotonic()
        self.samples: list[tuple[float, Any]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                value = self.fn()
            except Exception:
                self.errors += 1
            else:
                if value is not None:
                    self.samples.append((round(t - self.t0, 3), value))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t)))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)


def dir_bytes(path: Path) -> int:
    """Bytes of the regular files below `path` (files may come and go while we walk)."""
    total = 0
    stack = [os.fspath(path)]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                        elif e.is_file(follow_symlinks=False):
                            total += e.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue
        except (FileNotFoundError, NotADirectoryError):
            continue
    return total


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def total_cpu_seconds() -> tuple[float, float, float]:
    """(busy, total, stolen) CPU seconds of the whole machine since boot, from /proc/stat. Stolen:
    time a virtual CPU was ready to run but its host ran something else (counted as busy too)."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    # user nice system idle iowait irq softirq steal; guest time is already in user and nice.
    vals = [int(x) for x in parts[:8]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    steal = vals[7] if len(vals) > 7 else 0
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(vals) - idle) / ticks, sum(vals) / ticks, steal / ticks


class MachineLoad:
    """Busy share of all CPUs over a stretch of time (how much else ran while we measured), and the
    share the host took (steal): runs under much steal are slower and compare only among themselves."""

    def __enter__(self) -> MachineLoad:
        self.start = total_cpu_seconds()
        self.t0 = time.monotonic()
        self.load_start = os.getloadavg()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, total, stolen = total_cpu_seconds()
        elapsed = max(total - self.start[1], 1e-9)
        self.busy_pct = (busy - self.start[0]) / elapsed * 100
        self.stolen_pct = (stolen - self.start[2]) / elapsed * 100
        self.load_end = os.getloadavg()

    def as_dict(self) -> dict[str, Any]:
        return {
            "cpu_busy_pct": round(getattr(self, "busy_pct", float("nan")), 1),
            "cpu_stolen_pct": round(getattr(self, "stolen_pct", float("nan")), 1),
            "loadavg_start": self.load_start,
            "loadavg_end": getattr(self, "load_end", None),
        }


# ---- the machine ---------------------------------------------------------------------------------


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (out.stdout or out.stderr).strip().splitlines()
    lines = [ln for ln in text if "version" in ln.lower()] or text
    return re.sub(r"^\S+ \d+ INFO\s+", "", lines[0]) if lines else "?"


def machine_info() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    disk = shutil.disk_usage(tempfile.gettempdir())
    fs = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        fs = subprocess.run(
            ["df", "--output=fstype", tempfile.gettempdir()], capture_output=True, text=True, check=False
        ).stdout.split()[-1]
    b = bin_dir()
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": _first_line([str(b / "postgres"), "--version"]),
        "pgcopydb": _first_line(["pgcopydb", "--version"]),
        "tmp_fs": fs,
        "tmp_free_gb": round(disk.free / 1e9, 1),
        "loadavg": os.getloadavg(),
    }


# ---- API helpers ---------------------------------------------------------------------------------


# The SDK clients describe_raw polls through, one per thread and service, as a real client keeps
# its own: building an AcsClient costs about 2.3 ms of CPU, more than the call through it (1.6 ms,
# its connection kept alive), and a client polling a copy 20 times a second on this machine takes
# that from the copy.
_sdk_clients = threading.local()


def sdk_client(svc: Service) -> Any:
    """This thread's AcsClient for `svc` (a new one after the service's endpoint or key changed)."""
    clients: dict[tuple[str, str, str], Any] = _sdk_clients.__dict__.setdefault("by_service", {})
    made_for = (svc.endpoint, svc.key_id, svc.key_secret)
    if made_for not in clients:
        clients[made_for] = svc.core()
    return clients[made_for]


def describe_raw(svc: Service, instance_id: str, task_id: int) -> dict[str, Any]:
    """One migration item as JSON (with the Progress/Status extension fields)."""
    items = flows.raw_items(svc, instance_id, client=sdk_client(svc), task_id=task_id)
    if len(items) != 1:
        raise RuntimeError(f"expected one task {task_id} on {instance_id}, got {len(items)}")
    return dict(items[0])


def progress_of(item: dict[str, Any]) -> dict[str, Any]:
    p = item.get("Progress") or {}
    return json.loads(p) if isinstance(p, str) else dict(p)


def delete_instance(client: Any, instance_id: str, timeout: float = 120) -> None:
    """DeleteDBInstance and wait until it is gone (its task's slot is dropped on the source too)."""
    from alibabacloud_rds20140815 import models as rds

    client.delete_dbinstance(rds.DeleteDBInstanceRequest(dbinstance_id=instance_id))

    def gone() -> bool:
        ids = [
            i.dbinstance_id
            for i in client.describe_dbinstances(
                rds.DescribeDBInstancesRequest(region_id="cn-hangzhou", page_size=100)
            ).body.items.dbinstance
        ]
        return instance_id not in ids

    flows.wait_for(gone, timeout, interval=0.5, what=f"{instance_id} deleted")


# ---- output --------------------------------------------------------------------------------------

_t_start = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - _t_start:7.1f}s] {msg}", file=sys.stderr, flush=True)


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float):
        return round(obj, 6)
    return obj


@dataclass
class Result:
    """What one benchmark hands back: summary numbers, goals, time series for the plots, notes."""

    name: str
    title: str
    params: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    goals: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    skipped: str | None = None


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    t0 = time.monotonic()
    yield lambda: time.monotonic() - t0


def result_from_dict(d: dict[str, Any]) -> Result:
    return Result(**{k: v for k, v in d.items() if k in Result.__dataclass_fields__})


INSTANCE_FAILURES: list[str] = []  # reasons of instances that ended Failed (retried), for the report


def new_instance(svc: Service, client: Any, timeout: float = 180, tries: int = 3) -> Any:
    """CreateDBInstance and wait until Running; returns its attribute (id in .dbinstance_id). An
    instance that ends Failed is reported (reason from the service's store) and replaced."""
    import sqlite3

    last = ""
    for _ in range(tries):
        instance_id = flows.create_instance(client)
        try:
            attr = flows.wait_running(client, instance_id, timeout=timeout)
            attr.dbinstance_id = instance_id
            return attr
        except AssertionError as exc:
            with contextlib.closing(
                sqlite3.connect(f"file:{svc.data_dir / 'cloudmig.db'}?mode=ro", uri=True)
            ) as db:
                row = db.execute(
                    "SELECT status, status_reason FROM instances WHERE id = ?", (instance_id,)
                ).fetchone()
            last = f"{instance_id}: {row[0] if row else '?'}: {(row[1] if row else str(exc))[-800:]}"
            INSTANCE_FAILURES.append(last)
            log(f"  instance creation failed, trying again: {last}")
            with contextlib.suppress(Exception):
                delete_instance(client, instance_id)
    raise RuntimeError(f"no instance could be created: {last}")
