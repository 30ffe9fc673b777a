"""The HTTP application: the RDS RPC endpoint at `/`, plus /healthz."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cloudmig import errors
from cloudmig.api.actions import REGISTRY
from cloudmig.api.actions import instances as _instance_actions  # noqa: F401  (registers handlers)
from cloudmig.api.actions import migration as _migration_actions  # noqa: F401
from cloudmig.api.actions import switchover as _switchover_actions  # noqa: F401
from cloudmig.api.actions.registry import Params
from cloudmig.api.protocol import IncomingRequest, KeyRecord, authenticate, decode_query, peek_format
from cloudmig.api.render import render_error, render_success
from cloudmig.domain.ids import new_request_id
from cloudmig.services import keys as key_service
from cloudmig.services.context import ServiceContext
from cloudmig.store import keys as key_store

log = logging.getLogger(__name__)
access_log = logging.getLogger("cloudmig.access")

# Request bodies larger than this are refused before parsing (the SDKs send empty bodies).
MAX_BODY_BYTES = 1 << 20


def create_app(ctx: ServiceContext) -> Starlette:
    def lookup_key(key_id: str) -> KeyRecord | None:
        k = key_service.lookup_for_verification(ctx, key_id)
        return None if k is None else KeyRecord(secret=k.secret, active=k.active)

    def record_nonce(key_id: str, nonce: str, expires_at: datetime) -> bool:
        return key_store.record_nonce(ctx.db, key_id, nonce, expires_at, ctx.now())

    def handle(incoming: IncomingRequest) -> tuple[int, bytes, str, str, str]:
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
            )
            fmt, action_name = auth.format, auth.action
            handler = REGISTRY.get(auth.action)
            if handler is None:
                raise errors.ActionNotFound()
            body = dict(handler(ctx, Params(auth.params)))
            body["RequestId"] = request_id
            payload, ctype = render_success(auth.action, body, fmt)
            return 200, payload, ctype, request_id, action_name
        except errors.CloudmigError as err:
            code = err
        except Exception:
            # Never a traceback in a body; the log has it (and holds no secret: params are not logged).
            log.exception("request %s (%s) failed", request_id, action_name)
            code = errors.InternalError()
        payload, ctype, status = render_error(
            code, request_id=request_id, host_id=ctx.settings.host_id, fmt=fmt
        )
        return status, payload, ctype, request_id, f"{action_name}:{code.code}"

    async def rpc(request: Request) -> Response:
        started = time.monotonic()
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            err = errors.InvalidParameter("Body", "The request body is too large.")
            payload, ctype, status = render_error(
                err, request_id=new_request_id(), host_id=ctx.settings.host_id, fmt="JSON"
            )
            return Response(payload, status_code=status, media_type=ctype)
        incoming = IncomingRequest(
            method=request.method,
            path=request.url.path,
            query=decode_query(request.scope.get("query_string", b"")),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            content_type=request.headers.get("content-type", ""),
        )
        status, payload, ctype, request_id, what = await run_in_threadpool(handle, incoming)
        # The access log never shows the query string: the SDKs put SourcePassword there.
        access_log.info(
            '%s "%s %s" %d %s %s %.1fms',
            request.client.host if request.client else "-",
            request.method,
            request.url.path,
            status,
            what,
            request_id,
            (time.monotonic() - started) * 1000,
        )
        return Response(payload, status_code=status, headers={"content-type": ctype})

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/", rpc, methods=["GET", "POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
