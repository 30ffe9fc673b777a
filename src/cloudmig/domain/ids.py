"""Identifier formats of the RDS API."""

from __future__ import annotations

import re
import secrets
import string
import uuid

_ALNUM = string.ascii_lowercase + string.digits
INSTANCE_ID_RE = re.compile(r"^pgm-[a-z0-9]{16}$")


def new_instance_id() -> str:
    return "pgm-" + "".join(secrets.choice(_ALNUM) for _ in range(16))


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


def new_task_name() -> str:
    """The default TaskName of precheck and migration tasks alike: a UUID, as in the RDS
    documentation's CreateCloudMigrationTask sample (`362c6c7a-4d20-4eac-898c-1495ceab374c`)."""
    return str(uuid.uuid4())


def new_access_key_id() -> str:
    return "LTAI" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(20))


def new_access_key_secret() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(30))


def slot_prefix(installation_id: str) -> str:
    """What every slot of one cloudmig installation's name starts with."""
    return f"cloudmig_{installation_id}_"


def slot_name_for_task(installation_id: str, task_id: int) -> str:
    # The physical slot on the source owned by one migration task: task ids are never reused, and
    # the installation id keeps two services on one source apart.
    return f"{slot_prefix(installation_id)}{task_id}"
