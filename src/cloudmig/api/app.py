"""The HTTP application: the RDS RPC endpoint at `/`, plus /healthz.

A browser that opens `/` (GET, asking for HTML, no Action) is sent to the web console when it is
enabled: nothing an SDK sends looks like that, and a JSON MissingParameter error helps no one there.

Any request gets an RDS answer: a success body, or the error envelope (JSON unless Format=XML) with
the Code of `cloudmig.errors`. Nothing the caller sends can produce a traceback in a body: unexpected
exceptions become InternalError with the generic message and go to the log; a full store disk is
ServiceUnavailable (`cloudmig.api.fullstore`). Bodies are read up to
`MAX_BODY_BYTES` (the SDKs send empty ones). The access log has method, path (never the query
string: the SDKs put SourcePassword there), status, action, error code and RequestId; the same
action and code feed the request metrics (`cloudmig.api.metrics.observe_api_outcome`).
"""

from __future__ import annotations

import logging
import re
import time

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from cloudmig import errors
from cloudmig.api import metrics
from cloudmig.api.actions import REGISTRY
from cloudmig.api.actions.registry import Params
from cloudmig.api.fullstore import replay_safe, run_handler, store_full
from cloudmig.api.incoming import IncomingRequest, decode_query, peek_format
from cloudmig.api.nonces import NonceKeeper
from cloudmig.api.protocol import KeyRecord, authenticate
from cloudmig.api.render import render_error, render_success
from cloudmig.api.throttle import Throttled, TokenBuckets
from cloudmig.domain.ids import new_request_id
from cloudmig.runtime import AppContext
from cloudmig.services import keys as key_service
from cloudmig.store.db import is_disk_full

log = logging.getLogger(__name__)
access_log = logging.getLogger("cloudmig.access")

# Request bodies larger than this are refused before parsing (the SDKs send empty bodies). The rest
# of an oversized body is read and dropped, up to MAX_DRAIN_BYTES, so that the client, still sending,
# reads the answer instead of a connection reset; beyond that the connection is simply closed.
MAX_BODY_BYTES = 1 << 20
MAX_DRAIN_BYTES = 16 << 20
# What of a caller-chosen Action name may reach a log line.
_LOGGABLE_ACTION_RE = re.compile(r"[A-Za-z0-9.]{1,64}")


class _BodyTooLarge(Exception):
    pass


def _loggable_action(name: str) -> str:
    return name if _LOGGABLE_ACTION_RE.fullmatch(name) else "?"


async def _read_body(request: Request) -> bytes:
    """The request body, or `_BodyTooLarge` past `MAX_BODY_BYTES` (whose excess is read and dropped
    up to `MAX_DRAIN_BYTES`; a larger declared Content-Length is refused without reading)."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > MAX_DRAIN_BYTES:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_DRAIN_BYTES:
            raise _BodyTooLarge
        if size <= MAX_BODY_BYTES:
            chunks.append(chunk)
    if size > MAX_BODY_BYTES:
        raise _BodyTooLarge
    return b"".join(chunks)


def is_browser_visit(method: str, query: list[tuple[str, str]], headers: dict[str, str]) -> bool:
    """A person's browser opening the service's address: GET without an Action (neither in the query
    nor as the V3 `x-acs-action` header) that accepts HTML."""
    if method != "GET" or any(k == "Action" for k, _ in query) or "x-acs-action" in headers:
        return False
    return "text/html" in headers.get("accept", "").lower()


def _joined_headers(request: Request) -> dict[str, str]:
    """Lower-cased header names; a header given more than once has its values joined with ``,``."""
    out: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


def create_app(ctx: AppContext) -> Starlette:
    buckets = TokenBuckets(ctx.settings.throttle_rate_per_second, ctx.settings.throttle_burst)

    def lookup_key(key_id: str) -> KeyRecord | None:
        k = key_service.lookup_for_verification(ctx, key_id)
        return None if k is None else KeyRecord(secret=k.secret, active=k.active)

    # On a full store disk, nonces of replay-safe calls are kept in memory (api/nonces.py).
    record_nonce = NonceKeeper(
        ctx.db, now=ctx.now, replay_safe=replay_safe, store_full=lambda: store_full(ctx)
    )

    def error_response(
        err: errors.CloudmigError, request_id: str, fmt: str
    ) -> tuple[int, bytes, str, dict[str, str]]:
        payload, ctype, status = render_error(
            err, request_id=request_id, host_id=ctx.settings.host_id, fmt=fmt
        )
        headers = err.headers if isinstance(err, Throttled) else {}
        return status, payload, ctype, headers

    def handle(incoming: IncomingRequest) -> tuple[int, bytes, str, dict[str, str], str, str]:
        """Runs in a worker thread: the store and PostgreSQL calls are blocking."""
        request_id = new_request_id()
        fmt = peek_format(incoming)
        action_name = "-"
        try:
            auth = authenticate(
                incoming,
                keys=lookup_key,
                record_nonce=record_nonce,
                now=ctx.now(),
                window_seconds=ctx.settings.timestamp_window_seconds,
                admit=buckets.acquire,
            )
            fmt, action_name = auth.format, _loggable_action(auth.action)
            handler = REGISTRY.get(auth.action)
            if handler is None:
                raise errors.ActionNotFound()
            body = dict(run_handler(ctx, auth.action, handler, Params(auth.params)))
            body["RequestId"] = request_id
            payload, ctype = render_success(auth.action, body, fmt)
            return 200, payload, ctype, {}, request_id, action_name
        except errors.CloudmigError as err:
            code = err
        except Exception as exc:
            if is_disk_full(exc):  # the store logs a full disk itself, once a minute
                code = store_full(ctx)
            else:
                # Never a traceback in a body; the log has it (and holds no secret: params are not logged).
                log.exception("request %s (%s) failed", request_id, action_name)
                code = errors.InternalError()
        status, payload, ctype, headers = error_response(code, request_id, fmt)
        return status, payload, ctype, headers, request_id, f"{action_name}:{code.code}"

    def log_access(request: Request, status: int, what: str, request_id: str, started: float) -> None:
        """One access log line and the request metrics (`what`: "Action", "Action:Code", "-:Code")."""
        seconds = time.monotonic() - started
        try:
            metrics.observe_api_outcome(what, seconds)
        except Exception:  # metrics never fail a request
            log.exception("counting request %s failed", request_id)
        # The access log never shows the query string: the SDKs put SourcePassword there.
        access_log.info(
            '%s "%s %s" %d %s %s %.1fms',
            request.client.host if request.client else "-",
            request.method,
            request.url.path,
            status,
            what,
            request_id,
            seconds * 1000,
        )

    async def rpc(request: Request) -> Response:
        started = time.monotonic()
        try:
            body = await _read_body(request)
        except (_BodyTooLarge, ClientDisconnect) as exc:
            request_id = new_request_id()
            err = errors.InvalidParameter("Body", "The request body is too large.")
            if isinstance(exc, ClientDisconnect):
                err = errors.InvalidParameter("Body", "The request body was cut short.")
            status, payload, ctype, headers = error_response(err, request_id, "JSON")
            log_access(request, status, f"-:{err.code}", request_id, started)
            # The rest of an oversized body is not read: close the connection after answering.
            return Response(
                payload, status_code=status, headers={"content-type": ctype, "connection": "close"}
            )
        query = decode_query(request.scope.get("query_string", b""))
        headers = _joined_headers(request)
        if ctx.settings.console_enabled and is_browser_visit(request.method, query, headers):
            return RedirectResponse("/console/", status_code=303)
        incoming = IncomingRequest(
            method=request.method,
            path=request.url.path,
            query=query,
            headers=headers,
            body=body,
            content_type=request.headers.get("content-type", ""),
        )
        status, payload, ctype, headers, request_id, what = await run_in_threadpool(handle, incoming)
        log_access(request, status, what, request_id, started)
        return Response(payload, status_code=status, headers={"content-type": ctype, **headers})

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/", rpc, methods=["GET", "POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
