"""Role management on managed instances. Passwords are sent as SCRAM verifiers, never in clear."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import psycopg
from psycopg import sql

from cloudmig.pg import probes

SCRAM_ITERATIONS = 4096


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 secret PostgreSQL stores in pg_authid (RFC 5802/7677)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def create_login_role(
    conn: psycopg.Connection, name: str, password: str, *, superuser: bool = False, comment: str = ""
) -> None:
    # A verifier keeps the clear password out of the server log even with log_statement=all.
    attrs = sql.SQL("LOGIN SUPERUSER") if superuser else sql.SQL("LOGIN")
    conn.execute(
        sql.SQL("CREATE ROLE {} {} PASSWORD {}").format(
            sql.Identifier(name), attrs, sql.Literal(scram_verifier(password))
        )
    )
    if comment:
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(name), sql.Literal(comment)))


def set_password(conn: psycopg.Connection, name: str, password: str) -> None:
    """A new SCRAM password for an existing role."""
    conn.execute(
        sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(scram_verifier(password))
        )
    )


def ensure_superuser(conn: psycopg.Connection, name: str) -> bool:
    """Create a NOLOGIN-less superuser without password (socket trust only); True if it was created."""
    if probes.role_exists(conn, name):
        return False
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(sql.Identifier(name)))
    return True


def any_superuser(conn: psycopg.Connection) -> str | None:
    row = conn.execute(
        "SELECT rolname FROM pg_roles WHERE rolsuper AND rolcanlogin ORDER BY oid LIMIT 1"
    ).fetchone()
    return str(row[0]) if row else None
