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


def new_migration_task_name() -> str:
    return str(uuid.uuid4())


def new_precheck_task_name() -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(11))


def new_access_key_id() -> str:
    return "LTAI" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(20))


def new_access_key_secret() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(30))


def slot_name_for_task(task_id: int) -> str:
    # Physical slot on the source owned by one migration task.
    return f"cloudmig_task_{task_id}"
