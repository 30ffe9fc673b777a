"""A way in after the switch: the source's roles came along, a role without a password gets one
(ResetAccountPassword), a new account can be made (CreateAccount), and both log in over TCP."""

from __future__ import annotations

import psycopg
import pytest
from alibabacloud_rds20140815 import models as rds
from Tea.exceptions import TeaException

from tests.support.flows import (
    connect_target_tcp,
    create_instance,
    create_migration,
    migration_item,
    wait_for,
    wait_running,
    wait_streaming,
)

pytestmark = pytest.mark.e2e


def test_accounts_after_a_switchover(service, make_source) -> None:
    client = service.tea()
    source = make_source(scale=1)
    instance_id = create_instance(client)
    attr = wait_running(client, instance_id)
    task_id = create_migration(client, instance_id, source).task_id
    wait_streaming(client, instance_id, task_id)

    # While the instance is a standby, accounts cannot be managed.
    with pytest.raises(TeaException) as info:
        client.reset_account_password(
            rds.ResetAccountPasswordRequest(
                dbinstance_id=instance_id, account_name="postgres", account_password="Later_Pass_123"
            )
        )
    assert info.value.code == "IncorrectDBInstanceState"

    client.activate_migration_target_instance(
        rds.ActivateMigrationTargetInstanceRequest(dbinstance_name=instance_id, switch_time_mode="0")
    )
    wait_for(
        lambda: migration_item(client, instance_id, task_id).migrate_stage == "success", 60, what="success"
    )
    wait_for(
        lambda: (
            client.describe_dbinstance_attribute(
                rds.DescribeDBInstanceAttributeRequest(dbinstance_id=instance_id)
            )
            .body.items.dbinstance_attribute[0]
            .dbinstance_status
            == "Running"
        ),
        30,
        what="Running",
    )

    # The source's bootstrap superuser came along without a password (trust on its socket).
    with pytest.raises(psycopg.OperationalError):
        connect_target_tcp(attr, "postgres", "Owner_Pass_123")
    client.reset_account_password(
        rds.ResetAccountPasswordRequest(
            dbinstance_id=instance_id, account_name="postgres", account_password="Owner_Pass_123"
        )
    )
    with connect_target_tcp(attr, "postgres", "Owner_Pass_123") as conn:
        assert conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone() == (100000,)

    client.create_account(
        rds.CreateAccountRequest(
            dbinstance_id=instance_id,
            account_name="app_owner",
            account_password="App_Pass_123",
            account_type="Super",
        )
    )
    with connect_target_tcp(attr, "app_owner", "App_Pass_123") as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (
            True,
        )

    for name, code in (
        ("nobody_here", "InvalidAccountName.NotFound"),
        ("cloudmig_admin", "InvalidParameter"),
    ):
        with pytest.raises(TeaException) as info:
            client.reset_account_password(
                rds.ResetAccountPasswordRequest(
                    dbinstance_id=instance_id, account_name=name, account_password="X_Pass_123"
                )
            )
        assert info.value.code == code
    # The password never shows up in the service's output.
    assert "Owner_Pass_123" not in service.output() and "App_Pass_123" not in service.output()
