"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) in headless Chromium, from a real server, as on a
machine without network: each page renders the API's operations, asks no host but the server
for anything, and runs under its ``Content-Security-Policy`` without a violation or a console
error.

Every request the page makes is recorded (``page.on("request")``); any that is not for the
server's origin is also refused at once (``context.route``), as it would fail offline. CSP
violations are caught in the page (``securitypolicyviolation``) as well as in the console.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.servers import Server, start_server, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

_RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const where = `${event.sourceFile}:${event.lineNumber}`;
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI} ${where}`);
});
"""


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("docs") / "data")
    yield running
    stop_server(running)


@dataclass
class Visit:
    """What a page did: every URL it asked for, its console errors, CSP violations, page errors."""

    page: Any
    origin: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        own = (f"{self.origin}/", f"blob:{self.origin}/")  # a blob: URL the page made itself
        return [url for url in self.requests if not url.startswith(own)]

    def violations(self) -> list[str]:
        found: list[str] = self.page.evaluate("window.cspViolations")
        return found

    def assert_clean(self) -> None:
        assert self.requests, "no request was recorded"
        assert self.foreign_requests() == [], "the page asked another host"
        assert self.violations() == []
        assert self.console_errors == []
        assert self.page_errors == []


@contextmanager
def _visiting(browser: Any, server: Server, path: str) -> Iterator[Visit]:
    context = browser.new_context()
    context.set_default_timeout(30_000)
    origin = server.url

    def offline(route: Any) -> None:
        if route.request.url.startswith(f"{origin}/"):
            route.continue_()
        else:
            route.abort("internetdisconnected")

    context.route("**/*", offline)
    page = context.new_page()
    visit = Visit(page=page, origin=origin)
    page.on("request", lambda request: visit.requests.append(request.url))
    page.on("console", lambda message: message.type == "error" and visit.console_errors.append(message.text))
    page.on("pageerror", lambda error: visit.page_errors.append(str(error)))
    page.add_init_script(_RECORD_VIOLATIONS)
    page.goto(f"{origin}{path}")
    yield visit
    context.close()


@pytest.fixture
def swagger(browser: Any, docs_server: Server) -> Iterator[Visit]:
    with _visiting(browser, docs_server, "/docs") as visit:
        yield visit


@pytest.fixture
def redoc(browser: Any, docs_server: Server) -> Iterator[Visit]:
    with _visiting(browser, docs_server, "/redoc") as visit:
        yield visit


def _operations(origin: str) -> list[tuple[str, str]]:
    document = httpx.get(f"{origin}/openapi.json", timeout=30).json()
    return [(method, path) for path, item in document["paths"].items() for method in item]


def test_swagger_ui_renders_the_operations_from_the_server_alone(swagger: Visit) -> None:
    page = swagger.page
    generate = page.locator(".opblock", has=page.locator("[data-path='/api/generate/text-to-image']"))
    generate.wait_for()
    shown = page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/health", "/api/history", "/api/generate/text-to-image"} <= {p.strip() for p in shown}
    assert page.locator(".opblock").count() == len(_operations(swagger.origin))
    assert page.locator(".swagger-ui .info .title").inner_text().startswith("imagestudio")
    assert f"{swagger.origin}/openapi.json" in swagger.requests
    assert not any("validator" in url for url in swagger.requests)
    swagger.assert_clean()


def test_swagger_ui_tries_an_operation_against_the_server(swagger: Visit) -> None:
    """ "Try it out" sends the request to the server (connect-src 'self') and shows the answer."""
    page = swagger.page
    health = page.locator(".opblock", has=page.locator("[data-path='/health']"))
    health.locator(".opblock-summary").click()
    health.locator("button.try-out__btn").click()
    health.locator("button.execute").click()
    status = health.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200"
    assert '"status": "ok"' in health.locator(".live-responses-table tbody .microlight").first.inner_text()
    assert f"{swagger.origin}/health" in swagger.requests
    swagger.assert_clean()


def test_redoc_renders_the_operations_from_the_server_alone(redoc: Visit) -> None:
    page = redoc.page
    operation = page.locator("h2", has_text="Generate an image from a text prompt")
    operation.wait_for()
    headings = {text.strip() for text in page.locator("h2").all_inner_texts()}
    assert {"Is the server up, and which engine does it use?", "One generation"} <= headings
    assert page.locator("[data-section-id^='tag/']").count() >= 5
    assert "/api/generate/text-to-image" in page.locator("body").inner_text()
    assert f"{redoc.origin}/openapi.json" in redoc.requests
    redoc.assert_clean()


def test_redoc_searches_with_its_worker_under_the_policy(redoc: Visit) -> None:
    """ReDoc's search index runs in a worker made from a ``blob:`` URL (``worker-src blob:``)."""
    page = redoc.page
    page.locator("h2", has_text="Generate an image from a text prompt").wait_for()
    page.locator("[role='search'] input").fill("cancel")
    found = page.locator("[data-role='search:results'] li")
    found.first.wait_for()
    shown = found.all_inner_texts()
    assert len(shown) == 1, shown  # the one operation that cancels (a task)
    assert "cancel" in shown[0].lower()
    assert [worker.url.split(":", 1)[0] for worker in page.workers] == ["blob"]
    redoc.assert_clean()


def test_a_request_to_another_host_would_be_seen(swagger: Visit) -> None:
    """The checks above can fail: an image from another host, asked for by the page, is recorded
    (refused, as offline) and so is the policy's refusal."""
    visit = swagger
    if True:
        visit.page.locator(".opblock").first.wait_for()
        visit.page.evaluate("() => { const i = new Image(); i.src = 'https://cdn.example.invalid/x.png'; }")
        visit.page.wait_for_timeout(300)
        assert visit.foreign_requests() == ["https://cdn.example.invalid/x.png"]
        assert any("img-src" in violation for violation in visit.violations())
