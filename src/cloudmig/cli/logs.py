"""Logging for the service: stderr and a file in the data dir. Never given secrets to log."""

from __future__ import annotations

import errno
import logging
import logging.handlers
import sys
from pathlib import Path


class _LogFile(logging.handlers.RotatingFileHandler):
    """On a full disk a record that cannot be written is dropped (stderr has it) rather than followed
    by a traceback of its own on stderr."""

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return
        super().handleError(record)


def setup_logging(level: str, log_dir: Path) -> None:
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(level.upper())
    for h in list(root.handlers):
        root.removeHandler(h)
    stderr = logging.StreamHandler()
    stderr.setFormatter(fmt)
    root.addHandler(stderr)
    service = _LogFile(log_dir / "cloudmig.log", maxBytes=20 << 20, backupCount=5)
    service.setFormatter(fmt)
    root.addHandler(service)
    access = _LogFile(log_dir / "access.log", maxBytes=20 << 20, backupCount=5)
    access.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("cloudmig.access").addHandler(access)
