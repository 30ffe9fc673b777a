"""The web console in a real browser (Playwright driving Debian's Chromium) against a real service and
real PostgreSQL: sign in, open a running migration, see progress move, switch over, see success.

Screenshots go to $CLOUDMIG_SCREENSHOTS (docs/screenshots to refresh the ones in the docs) or to the
test's tmp dir."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.flows import (
    MIGRATION_PASSWORD,
    create_instance,
    create_migration,
    instance_attribute,
    migration_item,
    wait_for,
    wait_running,
)
from tests.support.pgcluster import make_base_dir
from tests.support.service import Service

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def console_service(e2e_base: Path) -> Iterator[Service]:
    d = make_base_dir("console-svc-", parent=e2e_base)
    # A throttled full copy (about 8 s for pgbench scale 1) so that the page sees it move.
    svc = Service(
        d, extra_env={"CLOUDMIG_BASEBACKUP_MAX_RATE_KB": "3072", "CLOUDMIG_COPY_COMPRESSION": "none"}
    ).start()
    yield svc
    svc.destroy()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install -y chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = os.environ.get("CLOUDMIG_SCREENSHOTS")
    d = Path(target) if target else tmp_path / "screenshots"
    d.mkdir(parents=True, exist_ok=True)
    return d


class Pages:
    """Every page the browser showed, to check that no password was ever rendered."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.seen: list[str] = []

    def snap(self) -> str:
        html = str(self.page.content())
        self.seen.append(html)
        return html


OK_GREEN = "rgb(220, 252, 231)"  # console.css: the success badge (.i-running, .s-succeeded)
WORK_AMBER = "rgb(254, 243, 199)"  # a task at work (.s-running)


def _background(page: Any, selector: str) -> str:
    return str(page.eval_on_selector(selector, "el => getComputedStyle(el).backgroundColor"))


def _fits_narrow_screen(page: Any, width: int) -> None:
    """Nothing widens the page past the screen: the header's parts stay on it and wide tables
    scroll inside their own card."""
    page.set_viewport_size({"width": width, "height": 800})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    rights = page.eval_on_selector_all(
        "header.top > *", "els => els.map(e => e.getBoundingClientRect().right)"
    )
    assert rights and max(rights) <= width, rights


def _sign_in(page: Any, base: str, key_id: str, secret: str) -> None:
    page.goto(f"{base}/console/login")
    page.fill("input[name=access_key_id]", key_id)
    page.fill("input[name=access_key_secret]", secret)
    page.click("button[type=submit]")


def test_console_sign_in_watch_and_switch_over(console_service, make_source, browser, shots) -> None:
    svc = console_service
    base = f"http://{svc.endpoint}"
    client = svc.tea()
    source = make_source(scale=1)
    instance_id = create_instance(client)
    wait_running(client, instance_id)

    # Without a session every page sends the browser to the sign-in page; so does the live fragment.
    r = httpx.get(f"{base}/console/instances", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("/console/login")
    assert httpx.get(f"{base}/console/instances/{instance_id}/tasks/1/live").status_code == 401
    # A forged session cookie is not a session.
    forged = httpx.get(f"{base}/console/instances", cookies={"cloudmig_session": "e30.AAAA"})
    assert forged.status_code == 303

    # The address the README gives has no trailing slash; a browser at the service's root lands
    # on the console too (an SDK call there still gets the RDS error).
    r = httpx.get(f"{base}/console", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/console/"
    r = httpx.get(f"{base}/", headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    assert httpx.get(f"{base}/").json()["Code"] == "MissingParameter"

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    pages = Pages(page)
    not_found: list[str] = []
    page.on("response", lambda resp: not_found.append(resp.url) if resp.status == 404 else None)
    page.goto(f"{base}/console")
    page.wait_for_url(re.compile(r".*/console/login$"))
    page.goto(f"{base}/")
    page.wait_for_url(re.compile(r".*/console/login$"))
    # The page names its icon (no /favicon.ico 404) and the icon is served.
    icon = page.get_attribute("link[rel=icon]", "href")
    assert icon and page.request.get(f"{base}{icon}").status == 200

    # A wrong secret is refused, and the secret typed is not echoed back.
    _sign_in(page, base, svc.key_id, "not-the-secret")
    assert "Sign-in failed" in pages.snap()
    assert "not-the-secret" not in pages.seen[-1]
    page.screenshot(path=str(shots / "console-sign-in.png"))

    # A sign-in form posted without its CSRF token is refused.
    r = httpx.post(
        f"{base}/console/login",
        data={"access_key_id": svc.key_id, "access_key_secret": svc.key_secret},
        follow_redirects=False,
    )
    assert r.status_code == 403

    _sign_in(page, base, svc.key_id, svc.key_secret)
    page.wait_for_url(re.compile(r".*/console/instances$"))
    assert instance_id in pages.snap()
    # A healthy instance wears the success colour.
    assert _background(page, "#instances .badge.i-running") == OK_GREEN

    # The instance page says where to connect and how to log in to an instance with no data yet.
    page.click(f"#instances a[href='/console/instances/{instance_id}']")
    page.wait_for_url(re.compile(f".*/console/instances/{instance_id}$"))
    port = int(instance_attribute(client, instance_id).port)
    assert page.inner_text("#connection-address") == f"127.0.0.1:{port}"
    assert page.inner_text("#connection-mode") == "empty cluster"
    assert "CreateAccount" in page.inner_text("#connection-login")
    assert f"port={port}" in page.inner_text("#connection-psql")
    cookie = next(c for c in context.cookies() if c["name"] == "cloudmig_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"

    created = create_migration(client, instance_id, source, task_name="console-migration")
    task_id = created.task_id
    wait_for(
        lambda: migration_item(client, instance_id, task_id).migrate_stage == "basebackup",
        60,
        interval=0.2,
        what="stage basebackup",
    )
    task_url = f"{base}/console/instances/{instance_id}/tasks/{task_id}"
    page.goto(f"{base}/console/instances")
    # The instance is Running (success colour) while its task is at work (another colour).
    assert _background(page, "#instances .badge.i-running") == OK_GREEN
    assert _background(page, "#instances .badge.s-running") == WORK_AMBER
    page.click(f"a[href='/console/instances/{instance_id}/tasks/{task_id}']")
    page.wait_for_url(task_url)
    html = pages.snap()
    assert "console-migration" in html
    # The assessment report is a table with one row per check.
    assert page.locator("#assessment tbody tr").count() >= 10
    assert "Check rds databases" in page.inner_text("#assessment")

    # Progress moves without reloading the page: the live block refreshes itself.
    page.wait_for_selector("#copy-progress", timeout=30_000)
    first = float(page.get_attribute("#copy-progress", "value") or 0)
    page.evaluate("() => { window.__samePage = true; }")
    page.wait_for_function(
        f"() => {{ const p = document.querySelector('#copy-progress'); return p && Number(p.value) > {first}; }}",
        timeout=30_000,
    )
    assert page.evaluate("() => window.__samePage === true"), "the page reloaded instead of refreshing"
    page.screenshot(path=str(shots / "console-task-copy.png"), full_page=True)
    pages.snap()

    # Streaming: the page reloads itself into the stage with the switchover form.
    page.wait_for_selector("#switch-form", timeout=120_000)
    assert page.inner_text("#replication-state") == "streaming"
    timeline = page.inner_text("#timeline")
    assert "increment" in timeline
    source.sql("CREATE TABLE console_rows AS SELECT g AS id FROM generate_series(1, 1000) g")
    page.wait_for_selector("#lag-chart svg polyline", state="attached", timeout=30_000)
    page.screenshot(path=str(shots / "console-task-streaming.png"), full_page=True)
    pages.snap()
    # The lag chart fills its card.
    chart_w = page.eval_on_selector("#lag-chart svg", "el => el.getBoundingClientRect().width")
    figure_w = page.eval_on_selector("#lag-chart", "el => el.getBoundingClientRect().width")
    assert chart_w >= 0.98 * figure_w and figure_w > 1000

    # On a phone-sized screen the page keeps to the screen's width; tables scroll in their card.
    narrow = context.new_page()
    narrow.set_viewport_size({"width": 420, "height": 800})
    narrow.goto(task_url)
    _fits_narrow_screen(narrow, 420)
    narrow.screenshot(path=str(shots / "console-narrow-task.png"), full_page=True)
    narrow.goto(f"{base}/console/instances")
    _fits_narrow_screen(narrow, 420)
    assert narrow.eval_on_selector(".table-card", "el => el.scrollWidth > el.clientWidth")
    narrow.close()

    # The force path states the data-loss risk and needs the instance ID typed.
    page.click("#force summary")
    assert "Risk of data loss" in page.inner_text("#force")
    page.fill("input[name=confirm_id]", "pgm-wrong")
    page.click("#force-button")
    assert "type the instance ID" in page.inner_text("#switch-error")
    assert migration_item(client, instance_id, task_id).migrate_stage == "increment"

    # A switchover form posted without the session's CSRF token is refused, even with the cookie.
    r = page.request.post(
        f"{base}/console/instances/{instance_id}/switchover",
        form={"task_id": str(task_id), "mode": "normal", "confirm": "yes"},
    )
    assert r.status == 403
    assert migration_item(client, instance_id, task_id).migrate_stage == "increment"

    # Switch over: confirmation checkbox, button, then success on the same page.
    page.goto(task_url)
    page.check("input[name=confirm]")
    page.click("#switch-button")
    page.wait_for_url(re.compile(r".*notice=switch$"))
    assert "Switchover requested" in pages.snap()
    page.wait_for_function(
        "() => document.querySelector('#task-status') && "
        "document.querySelector('#task-status').textContent.trim() === 'succeeded'",
        timeout=120_000,
    )
    assert page.locator("#timeline li.done").count() == 6
    assert page.locator("#evidence").count() == 1
    # What the operator does next: point the application at the instance, as a source role.
    assert page.inner_text("#connection-mode") == "read-write primary"
    host, _, shown_port = page.inner_text("#connection-address").partition(":")
    with psycopg.connect(
        host=host, port=int(shown_port), user="migratetest", password=MIGRATION_PASSWORD, dbname="postgres"
    ) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    # A finished task shows where it switched over, not the last rates of the increment stage.
    assert page.locator("#replication #cut-lsn").count() == 1
    assert page.locator("#replication #gen-rate").count() == 0
    page.screenshot(path=str(shots / "console-task-success.png"), full_page=True)
    pages.snap()
    item = migration_item(client, instance_id, task_id)
    assert (item.migrate_stage, item.replication_state) == ("success", "finish")

    # Tasks list, then sign out: the session is gone.
    page.goto(f"{base}/console/tasks")
    assert "console-migration" in pages.snap()
    page.click("header .signout button")
    page.wait_for_url(re.compile(r".*/console/login$"))
    page.goto(task_url)
    page.wait_for_url(re.compile(r".*/console/login$"))

    assert not not_found, not_found

    # No page ever carried the source password, raw or HTML-escaped.
    escaped = MIGRATION_PASSWORD.replace("&", "&amp;").replace('"', "&#34;").replace("'", "&#39;")
    for html in pages.seen:
        assert MIGRATION_PASSWORD not in html and escaped not in html
    context.close()


def test_revoked_key_ends_its_sessions(console_service, browser) -> None:
    svc = console_service
    base = f"http://{svc.endpoint}"
    created = svc.cli("keys", "create", "--json", "--description", "console-revoke")
    key = json.loads(created.stdout)
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, base, key["AccessKeyId"], key["AccessKeySecret"])
    page.wait_for_url(re.compile(r".*/console/instances$"))
    svc.cli("keys", "revoke", key["AccessKeyId"])
    page.goto(f"{base}/console/instances")
    page.wait_for_url(re.compile(r".*/console/login$"))
    context.close()
