"""The ASGI application served by `cloudmig serve`: the RDS API plus the operator surfaces."""

from __future__ import annotations

from starlette.applications import Starlette

from cloudmig.api.app import create_app
from cloudmig.services.context import ServiceContext


def build_asgi(ctx: ServiceContext) -> Starlette:
    return create_app(ctx)
