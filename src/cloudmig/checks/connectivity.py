"""Reaching the source, step by step (address, port, login, replication connection), and saying why
a step failed in the server's own words: authentication failed, no pg_hba.conf entry (for the
database or the replication line), database does not exist, connection refused or timed out on
host:port, SSL required, certificate verify failed. Texts never contain the password.
"""

from __future__ import annotations

import errno
import re
import socket
from typing import Any

import psycopg

from cloudmig.checks.facts import bounded_text, describe_error
from cloudmig.pg import catalog
from cloudmig.pg.source import Source

APPLICATION_NAME = "cloudmig-assessment"
# Databases a login is tried in: postgres, and template1 when postgres does not exist.
LOGIN_DATABASES = ("postgres", "template1")

Conn = psycopg.Connection[tuple[Any, ...]]

# connect() failures that say the address itself cannot be reached (vs. refused: nothing listens).
_UNREACHABLE_ERRNOS = frozenset(
    {
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
        errno.ETIMEDOUT,
        errno.EADDRNOTAVAIL,
        errno.EAFNOSUPPORT,
    }
)
# The server's (or libpq's) reason in one line of a connection error.
_SEVERITY_RE = re.compile(r"\b(?:FATAL|ERROR|PANIC):\s+(.*)$")
_FAILED_RE = re.compile(r".*failed:\s+(.*)$")  # the text after the last "failed:"


# ---- TCP ---------------------------------------------------------------------------------------------


def _os_reason(exc: OSError, addr: str, port: int) -> str:
    what = (exc.strerror or describe_error(exc)).strip()
    return f"{what[:1].lower()}{what[1:]} on {addr}:{port}"


def probe_tcp(host: str, port: int, timeout: float) -> tuple[str | None, str | None, str | None]:
    """(address, ip_error, port_error) of a TCP connect to host:port.

    A refused connect proves the address is reachable (port failure); unreachable, timeout and a
    name that does not resolve are address failures. With several addresses, one success is enough.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        return None, f"cannot resolve {host}: {describe_error(exc)}", None
    first_addr: str | None = None
    ip_error: str | None = None
    refused: tuple[str, str] | None = None
    tried: set[tuple[int, str]] = set()
    for family, socktype, proto, _name, sockaddr in infos:
        addr = str(sockaddr[0])
        if (family, addr) in tried:
            continue
        tried.add((family, addr))
        first_addr = first_addr or addr
        try:
            with socket.socket(family, socktype, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
            return addr, None, None
        except ConnectionRefusedError:
            refused = refused or (addr, f"connection refused on {addr}:{port}")
        except TimeoutError:
            ip_error = ip_error or f"connection timed out on {addr}:{port} after {timeout:g}s"
        except OSError as exc:
            if exc.errno in _UNREACHABLE_ERRNOS:
                ip_error = ip_error or _os_reason(exc, addr, port)
            else:  # reachable but not accepting (reset, ...): the port is the problem
                refused = refused or (addr, _os_reason(exc, addr, port))
    if refused is not None:
        return refused[0], None, refused[1]
    return first_addr, ip_error or f"{host} has no address", None


# ---- the server's reason -------------------------------------------------------------------------------


def _normalise(reason: str, host: str, port: int) -> str:
    lowered = reason.lower()
    if "timeout expired" in lowered:
        return f"connection timed out on {host}:{port}"
    if "connection refused" in lowered:
        return f"connection refused on {host}:{port}"
    return reason


def server_reason(exc: BaseException, source: Source) -> str:
    """Why a connection to the source failed, as the server (or libpq) said it: one line per
    attempt, deduplicated, masked and bounded."""
    reasons: list[str] = []
    for raw in str(exc).splitlines():
        line = raw.strip()
        match = _SEVERITY_RE.search(line) or _FAILED_RE.search(line)
        if match is None:
            continue
        reason = _normalise(" ".join(match.group(1).split()), source.host, source.port)
        if reason and reason not in reasons:
            reasons.append(reason)
    text = "; ".join(reasons) or _normalise(" ".join(str(exc).split()), source.host, source.port)
    if source.tls.sslmode == "disable" and "no pg_hba.conf entry" in text:
        text += " (the source may accept SSL connections only; sslmode is disable)"
    return bounded_text(text, source.password)


# ---- sessions ----------------------------------------------------------------------------------------


def open_session(source: Source, dbname: str) -> Conn:
    """A read-only session as the migration account in `dbname`."""
    conn = source.connect(dbname, application_name=APPLICATION_NAME)
    try:
        conn.autocommit = True
        catalog.read_only_session(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _postgres_closed(text: str) -> bool:
    """The postgres database itself is missing or closed to the account (worth trying template1)."""
    return 'database "postgres" does not exist' in text or 'permission denied for database "postgres"' in text


def login(source: Source) -> tuple[Conn | None, str, str | None]:
    """(session, its database, None) after a successful login, else (None, "", why). The postgres
    database is tried first; template1 only when postgres does not exist (or may not be entered)."""
    error: str | None = None
    for dbname in LOGIN_DATABASES:
        try:
            return open_session(source, dbname), dbname, None
        except psycopg.Error as exc:
            reason = server_reason(exc, source)
            error = reason if error is None else f"{error}; in {dbname}: {reason}"
            if not _postgres_closed(str(exc)):
                break
    return None, "", error


def try_replication(source: Source) -> str | None:
    """None when a physical replication connection is accepted, else the server's reason."""
    try:
        conn = source.connect_replication(application_name=APPLICATION_NAME)
    except Exception as exc:
        return server_reason(exc, source)
    conn.close()
    return None
