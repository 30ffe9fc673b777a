"""Logging for the service: stderr and a file in the data dir. Never given secrets to log."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path


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
    service = logging.handlers.RotatingFileHandler(log_dir / "cloudmig.log", maxBytes=20 << 20, backupCount=5)
    service.setFormatter(fmt)
    root.addHandler(service)
    access = logging.handlers.RotatingFileHandler(log_dir / "access.log", maxBytes=20 << 20, backupCount=5)
    access.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("cloudmig.access").addHandler(access)
