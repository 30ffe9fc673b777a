"""One service per data dir: an exclusive lock held for the life of `cloudmig serve`."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


class DataDirLocked(RuntimeError):
    pass


def lock_data_dir(data_dir: Path) -> IO[str]:
    f = open(data_dir / "cloudmig.lock", "a+")  # noqa: SIM115  (held open until exit)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise DataDirLocked(f"another cloudmig service is using {data_dir}") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f
