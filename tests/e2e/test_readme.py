"""The README's code that SDK users copy runs as written: its SDK example, against a real service,
a real source and the official tea SDK."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_rds20140815 import models as rds

from tests.support.flows import MIGRATION_PASSWORD, create_instance, wait_running
from tests.support.service import Service

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(marker: str) -> str:
    """The python block right after `<!-- marker -->` in the README."""
    found = re.search(rf"<!-- {marker} -->\n```python\n(.*?)\n```", README.read_text(), re.S)
    assert found, f"no python block after <!-- {marker} --> in README.md"
    return found.group(1)


def test_the_sdk_example_reads_the_verdict_and_the_extension_fields(
    service: Service, make_source: Any
) -> None:
    source = make_source(scale=1)
    c = service.tea()
    iid = create_instance(c)
    wait_running(c, iid)
    names: dict[str, Any] = {
        "c": c,
        "rds": rds,
        "iid": iid,
        "SOURCE": {
            "source_ip_address": "127.0.0.1",
            "source_port": source.port,
            "source_account": "migratetest",
            "source_password": MIGRATION_PASSWORD,
            "source_category": "ecsOnVpc",
        },
    }
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(readme_block("sdk-example"), names)  # noqa: S102  (the README's own code)

    assert names["passed"] is True
    report = names["report"]
    assert report["Status"] == "succeeded" and report["Reason"] == ""
    assert {c["Name"] for c in report["CheckResults"]} >= {"Check rds databases", "Check wal level"}
    assert printed.getvalue().startswith("succeeded ")
    # A warning of the assessment (if any) is printed with its level; never the password.
    assert MIGRATION_PASSWORD not in printed.getvalue()
