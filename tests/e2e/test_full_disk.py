"""The control plane on a full disk (issue 10, item 6).

The service's data dir (SQLite store, logs, instances, the space reserve) is a small tmpfs. With an
instance created and the disk then filled to the last byte by another file: the Describe calls answer
through the tea SDK, a create answers ServiceUnavailable (503) naming the full disk instead of an
InternalError, DeleteDBInstance works and the instance goes, and once space is freed the reserve comes
back and everything works again. A restart on the full disk changes none of that.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_rds20140815 import models as rds
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException

from tests.support.flows import create_instance, instance_attribute, migration_items, wait_for, wait_running
from tests.support.pgcluster import make_base_dir
from tests.support.service import Service

pytestmark = pytest.mark.e2e

# initdb of a PostgreSQL 15 instance takes ~40 MiB; 32 MiB of reserve; the rest is the store and logs.
TMPFS_SIZE = "160m"
RESERVE_FILE = "space-reserve"


def _mount_tmpfs(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs as the service's data dir needs root")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0711", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not allowed here: {proc.stderr.strip()}")


def _fill(path: Path) -> None:
    """Write `path` until the filesystem has not one byte left."""
    chunk = 1 << 20
    with open(path, "wb", buffering=0) as f:
        while chunk:
            try:
                f.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2
    assert os.statvfs(path).f_bavail == 0


@pytest.fixture
def full_disk_service() -> Iterator[Service]:
    base = make_base_dir("cloudmig-fulldisk-")
    data = base / "data"
    data.mkdir(mode=0o711)
    _mount_tmpfs(data)
    svc = Service(base)
    try:
        yield svc
    finally:
        svc.destroy()  # stops the service and its instances before the filesystem goes away
        subprocess.run(["umount", "--lazy", str(data)], check=False)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def _api_error(exc: BaseException) -> tuple[str, int, str]:
    assert isinstance(exc, (ClientException, ServerException)), repr(exc)
    return str(exc.code), int(exc.status_code or 0), str(exc.message)


def _instance_ids(client: Any) -> list[str]:
    resp = client.describe_dbinstances(rds.DescribeDBInstancesRequest(region_id="cn-hangzhou"))
    return [i.dbinstance_id for i in resp.body.items.dbinstance]


def test_full_disk_keeps_describe_and_delete_working(full_disk_service: Service) -> None:
    svc = full_disk_service.start()
    reserve = svc.data_dir / RESERVE_FILE
    client = svc.tea()
    iid = create_instance(client)
    wait_running(client, iid)

    filler = svc.data_dir / "filler"
    _fill(filler)

    # Reads answer, several times (each call is a new nonce the store cannot record).
    for _ in range(3):
        assert _instance_ids(client) == [iid]
        assert instance_attribute(client, iid).dbinstance_status == "Running"
        assert migration_items(client, iid) == []
    assert reserve.stat().st_size == 32 << 20, "the service keeps a 32 MiB reserve in its data dir"

    # A write answers the clear error and leaves nothing behind.
    with pytest.raises((ClientException, ServerException)) as caught:
        create_instance(client)
    code, status, message = _api_error(caught.value)
    assert (code, status) == ("ServiceUnavailable", 503), message
    assert "full" in message and str(svc.data_dir) in message, message
    assert "Traceback" not in message and "OperationalError" not in message, message
    assert _instance_ids(client) == [iid]
    assert reserve.exists(), "an ordinary write does not spend the reserve"

    # A service (re)started on the full disk answers too.
    svc.stop()
    svc.start()
    assert _instance_ids(client) == [iid]
    assert instance_attribute(client, iid).dbinstance_status == "Running"

    # Delete works: it spends the reserve, and the engine removes the instance's files.
    client.delete_dbinstance(rds.DeleteDBInstanceRequest(dbinstance_id=iid))
    assert not reserve.exists()
    wait_for(lambda: _instance_ids(client) == [], 60, what="the instance to be deleted")
    assert not (svc.data_dir / "instances" / iid).exists()
    assert "space reserve" in svc.output()

    # Space freed: the reserve comes back and writes work again.
    filler.unlink()
    wait_for(lambda: reserve.exists() and reserve.stat().st_size == 32 << 20, 60, what="the reserve back")
    iid2 = create_instance(client)
    wait_running(client, iid2)
    client.delete_dbinstance(rds.DeleteDBInstanceRequest(dbinstance_id=iid2))
    wait_for(lambda: _instance_ids(client) == [], 60, what="the second instance to be deleted")
    assert svc.proc is not None and svc.proc.poll() is None, "the service kept running"
