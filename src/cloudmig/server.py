"""The ASGI application served by `cloudmig serve`: the RDS API plus the operator surfaces.

/metrics     Prometheus exposition, unsigned like any exporter (setting metrics_enabled)
/console     the web console (setting console_enabled); `/console` itself redirects to `/console/`
everything else: the RDS API application (api/app.py), with its own lifespan kept
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from cloudmig.api.app import create_app
from cloudmig.runtime import AppContext

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def build_asgi(ctx: AppContext) -> Starlette:
    api = create_app(ctx)
    routes: list[BaseRoute] = []
    history = None
    s = ctx.settings
    if s.metrics_enabled:
        from cloudmig.metrics import build_registry, exposition

        registry = build_registry(ctx)

        async def metrics(_: Request) -> Response:
            body = await run_in_threadpool(exposition, registry)
            return Response(body, media_type=METRICS_CONTENT_TYPE)

        routes.append(Route("/metrics", metrics, methods=["GET"]))
    if s.console_enabled:
        from cloudmig.console.app import create_console
        from cloudmig.console.history import LagHistory

        history = LagHistory(ctx, interval=s.console_sample_seconds, points=s.console_history_points)

        async def console_slash(_: Request) -> Response:
            # The mount below only matches /console/...: the address the README gives has no slash.
            return RedirectResponse("/console/", status_code=307)

        routes.append(Route("/console", console_slash, methods=["GET", "HEAD"]))
        routes.append(Mount("/console", app=create_console(ctx, history)))
    routes.append(Mount("", app=api))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if history is not None:
            history.start()
        try:
            async with api.router.lifespan_context(api):
                yield
        finally:
            if history is not None:
                await run_in_threadpool(history.stop)

    return Starlette(routes=routes, lifespan=lifespan)
