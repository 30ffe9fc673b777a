"""The web console at /console: server-rendered pages over the services, no external asset.

Sign-in checks an AccessKeyId and its secret; the session is an HMAC-signed cookie (HttpOnly,
SameSite=Strict, Secure over https) and every form carries the session's CSRF token. Pages never
receive a source password: they are built from views.py dicts, which leave it out.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cloudmig import __version__, errors
from cloudmig.console import fmt
from cloudmig.console.charts import lag_chart
from cloudmig.console.history import LagHistory
from cloudmig.console.session import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Session,
    SessionSigner,
    new_token,
    tokens_match,
)
from cloudmig.console.views import connection_view, instance_view, task_summary, task_view
from cloudmig.domain.enums import TaskKind, TaskStatus
from cloudmig.domain.ids import INSTANCE_ID_RE
from cloudmig.runtime import AppContext
from cloudmig.services import instances as instance_svc
from cloudmig.services import keys as key_svc
from cloudmig.services import migrations as migration_svc
from cloudmig.store.tasks import TaskFilter

HERE = Path(__file__).parent
MAX_FORM_BYTES = 16 * 1024
# Failed sign-ins allowed per client address and window before it has to wait.
SIGNIN_FAILURES, SIGNIN_WINDOW = 10, 60.0

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
NOTICES = {
    "switch": "Switchover requested: the target catches up with the source's last write, then it is promoted.",
    "force": "Forced switchover requested: the target is promoted at what it has replayed.",
}


class Console:
    def __init__(self, ctx: AppContext, history: LagHistory) -> None:
        self.ctx = ctx
        self.history = history
        self.signer = SessionSigner.from_settings(ctx.settings)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(version=__version__, human_bytes=fmt.human_bytes)
        self._failures: dict[str, deque[float]] = {}
        self._failures_lock = threading.Lock()

    # ---- plumbing -------------------------------------------------------------------------------

    @staticmethod
    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/") or "/console"

    def secure(self, request: Request) -> bool:
        return request.url.scheme == "https" or self.ctx.settings.console_secure_cookies

    def render(
        self, request: Request, name: str, status: int = 200, session: Session | None = None, **values: Any
    ) -> Response:
        html = self.env.get_template(name).render(
            base=self.base(request), session=session, csrf=session.csrf if session else "", **values
        )
        return self.harden(HTMLResponse(html, status_code=status))

    @staticmethod
    def harden(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def set_cookie(
        self, request: Request, resp: Response, name: str, value: str, max_age: int | None
    ) -> None:
        resp.set_cookie(
            name,
            value,
            max_age=max_age,
            path=self.base(request),
            httponly=True,
            samesite="strict",
            secure=self.secure(request),
        )

    def session(self, request: Request) -> Session | None:
        """The valid session of this request whose key is still active (blocking: store read)."""
        s = self.signer.verify(request.cookies.get(SESSION_COOKIE))
        if s is None:
            return None
        key = key_svc.lookup_for_verification(self.ctx, s.key_id)
        return s if key is not None and key.active else None

    def to_login(self, request: Request) -> Response:
        return self.harden(RedirectResponse(f"{self.base(request)}/login", status_code=303))

    @staticmethod
    async def form(request: Request) -> dict[str, str] | None:
        if (
            request.headers.get("content-type", "").split(";")[0].strip()
            != "application/x-www-form-urlencoded"
        ):
            return None
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return None
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            return None
        return {k: v[0] for k, v in parsed.items()}

    def cross_site(self, request: Request) -> bool:
        """A POST whose Origin names another site (SameSite=Strict and the CSRF token cover the rest)."""
        origin = request.headers.get("origin")
        if not origin or origin == "null":  # privacy settings may hide it: the token still decides
            return False
        return origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}"

    def throttled(self, client: str) -> bool:
        now = time.monotonic()
        with self._failures_lock:
            q = self._failures.get(client)
            while q and now - q[0] > SIGNIN_WINDOW:
                q.popleft()
            return bool(q) and len(q or ()) >= SIGNIN_FAILURES

    def failed_signin(self, client: str) -> None:
        with self._failures_lock:
            self._failures.setdefault(client, deque()).append(time.monotonic())

    # ---- sign-in --------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        token = new_token()
        resp = self.render(request, "login.html", login_csrf=token, error=None)
        self.set_cookie(request, resp, LOGIN_CSRF_COOKIE, token, max_age=3600)
        return resp

    async def login(self, request: Request) -> Response:
        form = await self.form(request)
        client = request.client.host if request.client else "-"
        if (
            form is None
            or self.cross_site(request)
            or not tokens_match(request.cookies.get(LOGIN_CSRF_COOKIE), form.get("csrf_token"))
        ):
            return self.harden(Response("Invalid or expired form; reload the sign-in page.", status_code=403))
        token = new_token()
        if self.throttled(client):
            resp = self.render(
                request, "login.html", 429, login_csrf=token, error="Too many failed sign-ins; wait a minute."
            )
            self.set_cookie(request, resp, LOGIN_CSRF_COOKIE, token, max_age=3600)
            return resp
        key_id = form.get("access_key_id", "").strip()
        secret = form.get("access_key_secret", "")
        key = await run_in_threadpool(key_svc.lookup_for_verification, self.ctx, key_id) if key_id else None
        ok = key is not None and key.active and hmac.compare_digest(key.secret.encode(), secret.encode())
        if not ok:
            self.failed_signin(client)
            await asyncio.sleep(0.3)
            resp = self.render(
                request,
                "login.html",
                401,
                login_csrf=token,
                error="Sign-in failed: unknown or inactive key, or wrong secret.",
            )
            self.set_cookie(request, resp, LOGIN_CSRF_COOKIE, token, max_age=3600)
            return resp
        cookie, _ = self.signer.issue(key_id)
        resp = self.harden(RedirectResponse(f"{self.base(request)}/instances", status_code=303))
        self.set_cookie(request, resp, SESSION_COOKIE, cookie, max_age=int(self.signer.lifetime))
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path=self.base(request))
        return resp

    async def logout(self, request: Request) -> Response:
        session = await run_in_threadpool(self.session, request)
        form = await self.form(request)
        if session is None or form is None or not tokens_match(session.csrf, form.get("csrf_token")):
            return self.harden(Response("Invalid or expired form.", status_code=403))
        resp = self.to_login(request)
        resp.delete_cookie(SESSION_COOKIE, path=self.base(request))
        return resp

    # ---- pages ----------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return self.harden(RedirectResponse(f"{self.base(request)}/instances", status_code=303))

    def instances(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self.to_login(request)
        _, recs = instance_svc.list_instances(self.ctx, instance_id=None, page_number=1, page_size=1000)
        rows = []
        for r in recs:
            view = instance_view(r, self.ctx.settings.instance_host)
            latest = self._latest(r.id, TaskKind.MIGRATION)
            view["task"] = task_summary(latest) if latest else None
            rows.append(view)
        return self.render(request, "instances.html", session=session, instances=rows, nav="instances")

    def instance(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self.to_login(request)
        iid = str(request.path_params["instance_id"])
        try:
            rec = instance_svc.get_instance(self.ctx, iid) if INSTANCE_ID_RE.match(iid) else None
        except errors.InstanceNotFound:
            rec = None
        if rec is None:
            return self.render(request, "notfound.html", 404, session=session, what=f"instance {iid}")
        migrations = self._tasks(iid, TaskKind.MIGRATION)
        tasks = [task_summary(t) for t in migrations + self._tasks(iid, TaskKind.PRECHECK)]
        host = self.ctx.settings.instance_host
        return self.render(
            request,
            "instance.html",
            session=session,
            inst=instance_view(rec, host),
            conn=connection_view(rec, host, migrations[0] if migrations else None),
            tasks=tasks,
            nav="instances",
        )

    def tasks(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self.to_login(request)
        _, recs = instance_svc.list_instances(self.ctx, instance_id=None, page_number=1, page_size=1000)
        rows = [task_summary(t) for r in recs for kind in TaskKind for t in self._tasks(r.id, kind)]
        rows.sort(key=lambda t: t["id"], reverse=True)
        return self.render(request, "tasks.html", session=session, tasks=rows, nav="tasks")

    def _tasks(self, instance_id: str, kind: TaskKind, task_id: int | None = None) -> list[Any]:
        page = migration_svc.describe_tasks(
            self.ctx,
            TaskFilter(instance_id=instance_id, kind=kind, task_id=task_id),
            page_number=1,
            page_size=100,
        )
        return list(page.tasks)

    def _latest(self, instance_id: str, kind: TaskKind) -> Any:
        tasks = self._tasks(instance_id, kind)
        return tasks[0] if tasks else None

    def _task(self, iid: str, tid: int) -> dict[str, Any] | None:
        if not INSTANCE_ID_RE.match(iid):
            return None
        for kind in TaskKind:
            try:
                page = migration_svc.describe_tasks(
                    self.ctx, TaskFilter(instance_id=iid, kind=kind, task_id=tid), page_number=1, page_size=1
                )
            except errors.InstanceNotFound:
                return None
            if page.tasks:
                t = page.tasks[0]
                view = task_view(t, page.events.get(t.id, []))
                view["chart"] = lag_chart(self.history.series(t.id))
                view["conn"] = None
                if t.kind is TaskKind.MIGRATION and t.status is TaskStatus.SUCCEEDED:
                    # Where the application goes now: the instance's address and how to log in.
                    try:
                        rec = instance_svc.get_instance(self.ctx, iid)
                    except errors.InstanceNotFound:
                        rec = None
                    if rec is not None:
                        view["conn"] = connection_view(rec, self.ctx.settings.instance_host, t)
                return view
        return None

    def task(self, request: Request, *, error: str | None = None, status: int = 200) -> Response:
        session = self.session(request)
        if session is None:
            return self.to_login(request)
        iid, tid = str(request.path_params["instance_id"]), int(request.path_params["task_id"])
        view = self._task(iid, tid)
        if view is None:
            return self.render(request, "notfound.html", 404, session=session, what=f"task {tid} of {iid}")
        notice = NOTICES.get(request.query_params.get("notice", ""))
        return self.render(
            request, "task.html", status, session=session, t=view, nav="tasks", error=error, notice=notice
        )

    def task_live(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self.harden(Response("signed out", status_code=401))
        iid, tid = str(request.path_params["instance_id"]), int(request.path_params["task_id"])
        view = self._task(iid, tid)
        if view is None:
            return self.harden(Response("not found", status_code=404))
        html = self.env.get_template("_live.html").render(base=self.base(request), t=view)
        resp = self.harden(HTMLResponse(html))
        resp.headers["X-Console-Key"] = view["key"]
        return resp

    async def switchover(self, request: Request) -> Response:
        session = await run_in_threadpool(self.session, request)
        if session is None:
            return self.to_login(request)
        form = await self.form(request)
        if form is None or self.cross_site(request) or not tokens_match(session.csrf, form.get("csrf_token")):
            return self.harden(Response("Invalid or expired form; reload the page.", status_code=403))
        iid = str(request.path_params["instance_id"])
        tid = int(form.get("task_id", "0") or 0)
        force = form.get("mode") == "force"
        request.scope.setdefault("path_params", {})["task_id"] = tid
        if force and form.get("confirm_id", "").strip() != iid:
            return await run_in_threadpool(
                self.task,
                request,
                error="To force a switchover, type the instance ID to confirm.",
                status=400,
            )
        if not force and form.get("confirm") != "yes":
            return await run_in_threadpool(
                self.task,
                request,
                error="Confirm that the application's writes to the source have stopped.",
                status=400,
            )
        from cloudmig.services.switchover import request_switchover

        try:
            await run_in_threadpool(request_switchover, self.ctx, iid, force=force)
        except errors.CloudmigError as exc:
            return await run_in_threadpool(self.task, request, error=exc.message, status=exc.status)
        notice = "force" if force else "switch"
        return self.harden(
            RedirectResponse(
                f"{self.base(request)}/instances/{iid}/tasks/{tid}?notice={notice}", status_code=303
            )
        )


def create_console(ctx: AppContext, history: LagHistory) -> Starlette:
    c = Console(ctx, history)
    return Starlette(
        routes=[
            Route("/", c.home, methods=["GET"]),
            Route("/login", c.login_page, methods=["GET"]),
            Route("/login", c.login, methods=["POST"]),
            Route("/logout", c.logout, methods=["POST"]),
            Route("/instances", c.instances, methods=["GET"]),
            Route("/instances/{instance_id}", c.instance, methods=["GET"]),
            Route("/tasks", c.tasks, methods=["GET"]),
            Route("/instances/{instance_id}/tasks/{task_id:int}", c.task, methods=["GET"]),
            Route("/instances/{instance_id}/tasks/{task_id:int}/live", c.task_live, methods=["GET"]),
            Route("/instances/{instance_id}/switchover", c.switchover, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
    )
