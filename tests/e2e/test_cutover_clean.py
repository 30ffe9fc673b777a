"""Only real loss is reported (issue 11): clean switchovers in a row from sources whose autovacuum
is aggressive enough to run during and after every switch report no DataLoss; a writer on the old
source after the switch is reported at the next check of the watch, with its row count.

Half the switchovers are fenced (the account has the PostgreSQL 15 fence privileges; writers run
through Activate), half are not (no fence path: the writes stop before Activate, autovacuum runs
and a monitoring client reads every 100 ms, and the gate must accept the first call).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alibabacloud_rds20140815 import models as rds

from tests.support.cutover import activate_refusal, grant_fence, migrate, raw_item, wait_outcome
from tests.support.flows import wait_for
from tests.support.pgcluster import SourceCluster, make_base_dir
from tests.support.service import Service
from tests.support.writers import APP_PASSWORD, APP_ROLE, Endpoint, Route, Writer, WriterPool, prepare_source

pytestmark = pytest.mark.e2e

CHECK_SECONDS = 1.0
SWITCHES = int(os.environ.get("CLOUDMIG_TEST_CLEAN_SWITCHES", "20"))
# Long enough for several checks of the watch and several autovacuum rounds after the switch.
WATCH_SECONDS = 4.0
LATE_ROWS = 7
# Migrations made ahead while one source is switched over and watched.
PREPARED_AHEAD = 2

AUTOVACUUM = {
    "autovacuum_naptime": "1s",
    "autovacuum_vacuum_cost_delay": "0",
    "autovacuum_vacuum_threshold": "0",
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_vacuum_insert_threshold": "0",
    "autovacuum_vacuum_insert_scale_factor": "0",
    "autovacuum_analyze_threshold": "0",
    "autovacuum_analyze_scale_factor": "0",
}
# 100,000 dead rows just before Activate: autovacuum's VACUUM and ANALYZE of them run through the
# gate and past the cut.
DEAD_ROWS = "UPDATE pgbench_accounts SET abalance = abalance + 1"
AUTOVACUUM_RUNS = "SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) FROM pg_stat_all_tables"


@pytest.fixture(scope="module")
def watch_service(e2e_base: Path) -> Iterator[Service]:
    svc = Service(
        make_base_dir("svc-", parent=e2e_base),
        extra_env={"CLOUDMIG_POST_SWITCH_CHECK_SECONDS": str(CHECK_SECONDS)},
    ).start()
    yield svc
    svc.destroy()


@dataclass
class Run:
    n: int
    fenced: bool
    source: SourceCluster
    instance_id: str = ""
    task_id: int = 0
    attr: Any = None
    autovacuum_at_call: int = 0
    autovacuum_at_success: int = 0
    numbers: dict[str, Any] = field(default_factory=dict)


class Monitor(threading.Thread):
    """A monitoring client: one SELECT every 100 ms over one session, until stopped."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(daemon=True)
        self.endpoint, self.halt, self.reads = endpoint, threading.Event(), 0

    def run(self) -> None:
        with self.endpoint.connect() as conn:
            while not self.halt.wait(0.1):
                conn.execute("SELECT count(*) FROM ledger").fetchone()
                self.reads += 1


def _prepare(service: Service, make_source: Any, n: int) -> Run:
    source = make_source(scale=1, **AUTOVACUUM)
    prepare_source(source)
    fenced = n % 2 == 0
    if fenced:
        grant_fence(source)
    run = Run(n, fenced, source)
    run.instance_id, run.task_id, run.attr = migrate(service.tea(), source)
    return run


def _switch_fenced(service: Service, run: Run) -> None:
    client = service.tea()
    route = Route(Endpoint.tcp("127.0.0.1", run.source.port, APP_ROLE, APP_PASSWORD))
    with WriterPool([Writer(1, 20, route), Writer(2, 100, route)]) as pool:
        pool.wait_acks(5)
        run.source.sql(DEAD_ROWS)
        run.autovacuum_at_call = run.source.scalar(AUTOVACUUM_RUNS)
        assert activate_refusal(client, run.instance_id) is None
        assert wait_outcome(client, run.instance_id, run.task_id) == "success"
        run.autovacuum_at_success = run.source.scalar(AUTOVACUUM_RUNS)
        route.move_to(Endpoint.tcp(run.attr.connection_string, int(run.attr.port), APP_ROLE, APP_PASSWORD))
        pool.wait_acks(1, side="target")
    run.numbers["unavailability_s"] = round(pool.unavailability() or -1, 3)


def _switch_unfenced(service: Service, run: Run) -> None:
    client = service.tea()
    run.source.pgbench(seconds=1)  # changed tables for autovacuum, then the writes stop
    run.source.sql(DEAD_ROWS)
    monitor = Monitor(Endpoint.tcp("127.0.0.1", run.source.port, APP_ROLE, APP_PASSWORD))
    monitor.start()
    try:
        run.autovacuum_at_call = run.source.scalar(AUTOVACUUM_RUNS)
        message = activate_refusal(client, run.instance_id)
        assert message is None, f"switchover {run.n}: an idle source was refused: {message}"
        assert wait_outcome(client, run.instance_id, run.task_id) == "success"
        run.autovacuum_at_success = run.source.scalar(AUTOVACUUM_RUNS)
    finally:
        monitor.halt.set()
        monitor.join(10)
    run.numbers["monitor_reads"] = monitor.reads


def _check_no_loss(service: Service, run: Run) -> None:
    item = raw_item(service, run.instance_id, run.task_id)
    ev = item["Evidence"]
    assert item.get("DataLoss") is None and "DataLoss" not in ev, (run.n, ev)
    assert not item.get("Reason") and not ev.get("SourceWritesAfterSwitch"), (run.n, item.get("Reason"))
    assert "Writes reached the old source" not in item["Detail"]
    assert ev.get("SourceReachable") is True and ev.get("SourceCheckedAt"), ev
    assert ev["TimelineAfter"] == ev["TimelineBefore"] + 1
    run.numbers.update(gate_s=ev.get("GateSeconds"), total_s=ev.get("TotalSeconds"), fence=ev.get("Fence"))


def test_clean_switchovers_report_no_loss_and_a_late_writer_is_counted(
    watch_service: Any, make_source: Any, record_property: Any
) -> None:
    service = watch_service
    runs: list[Run] = []
    started = time.monotonic()
    # While one source is switched over and watched, the next migration is made.
    with ThreadPoolExecutor(PREPARED_AHEAD) as pool:
        upcoming: list[Future[Run]] = [
            pool.submit(_prepare, service, make_source, n) for n in range(min(PREPARED_AHEAD, SWITCHES))
        ]
        for n in range(SWITCHES):
            run = upcoming.pop(0).result()
            if n + PREPARED_AHEAD < SWITCHES:
                upcoming.append(pool.submit(_prepare, service, make_source, n + PREPARED_AHEAD))
            t0 = time.monotonic()
            (_switch_fenced if run.fenced else _switch_unfenced)(service, run)
            run.numbers["switch_s"] = round(time.monotonic() - t0, 2)
            time.sleep(WATCH_SECONDS)
            _check_no_loss(service, run)
            after = run.source.scalar(AUTOVACUUM_RUNS)
            run.numbers["autovacuum_after_switch"] = after - run.autovacuum_at_success
            run.numbers["autovacuum_since_call"] = after - run.autovacuum_at_call
            runs.append(run)
            if n + 1 < SWITCHES:  # keep the machine light: the old source and instance go
                with contextlib.suppress(Exception):
                    service.tea().delete_dbinstance(
                        rds.DeleteDBInstanceRequest(dbinstance_id=run.instance_id)
                    )
                run.source.destroy()
    # Autovacuum ran during or after the switchovers, not only before them.
    assert all(r.numbers["autovacuum_since_call"] > 0 for r in runs), [r.numbers for r in runs]

    # A writer on the old source after the switch: reported at the next check, with its rows.
    last = runs[-1]
    rows_before = last.source.scalar("SELECT count(*) FROM ledger")
    with psycopg.connect(
        host=str(last.source.socket_dir),
        port=last.source.port,
        user="postgres",
        dbname="postgres",
        autocommit=True,
        options="-c default_transaction_read_only=off",  # past the fence, as a superuser may
    ) as conn:
        for i in range(LATE_ROWS):
            conn.execute("INSERT INTO ledger (writer, n, side) VALUES (99, %s, 'late')", (i,))
    t_written = time.monotonic()
    loss = wait_for(
        lambda: raw_item(service, last.instance_id, last.task_id).get("DataLoss"),
        10 * CHECK_SECONDS,
        interval=0.05,
        what="DataLoss",
    )
    detected_after = time.monotonic() - t_written
    assert last.source.scalar("SELECT count(*) FROM ledger") == rows_before + LATE_ROWS
    assert loss["RowsAfterCut"] == LATE_ROWS, loss
    # The next check of the watch, not a later one.
    assert detected_after < 2 * CHECK_SECONDS + 1, detected_after
    item = raw_item(service, last.instance_id, last.task_id)
    assert f"{LATE_ROWS} row change(s) are not on the new primary" in item["Reason"]

    summary = {
        "switches": len(runs),
        "seconds": round(time.monotonic() - started, 1),
        "late_writer_detected_after_s": round(detected_after, 2),
        "runs": [{"n": r.n, "fenced": r.fenced, **r.numbers} for r in runs],
    }
    record_property("cutover_clean", summary)
    print(f"\nclean switchovers: {summary}")
