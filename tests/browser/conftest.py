"""A real browser against a real server: headless Chromium, attacker pages, a seeded ``imagestudio serve``.

- **Chromium**: ``IMAGESTUDIO_TEST_CHROMIUM`` names the executable (default ``/usr/bin/chromium``,
  the Debian package; Playwright's own download is not used). One browser per test session,
  driven by Playwright; each test gets a fresh context (no cookies, no cache). Without Chromium or
  Playwright these tests skip, saying so in the summary; with ``CI=true`` they fail instead,
  because CI must run them (``.ci/run`` installs Chromium first).
- **Name mapping**: the browser resolves ``rebind.test`` to 127.0.0.1
  (``--host-resolver-rules``): the state of a DNS-rebinding attack, whose first answer served the
  attacker's page and whose second points the same name at the user's own machine. Chromium's
  Private Network Access checks are switched off, so that what stops an attack is the server.
- **Sites**: a tiny HTTP server of the test's own, on any loopback address (127.0.0.2 is another
  origin than the server's 127.0.0.1), serving the pages a test gives it.
- **The studio**: ``imagestudio serve`` as a real process with DEFAULT settings (no token, default
  origins), a temporary data dir and a temporary ``HOME`` holding a "private" picture, seeded
  with one real generation, so that there is something to steal. :meth:`Studio.snapshot` reads
  its state directly (history, settings, tasks, the files of the data dir and of ``HOME``), so
  a test compares before and after an attack.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.servers import Server, start_server, stop_server

CHROMIUM_ENV = "IMAGESTUDIO_TEST_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
REBIND_HOST = "rebind.test"
ATTACKER_ADDRESS = "127.0.0.2"
SEEDED_PROMPT = "secret plans for the lighthouse on the cliff"
"""The seeded generation's prompt: an attack that reads history would see it."""
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",  # we run as root, where Chromium's own sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--host-resolver-rules=MAP {REBIND_HOST} 127.0.0.1",
    # Chromium's Private Network Access would refuse the rebound page's requests on its own (a
    # document of unknown address space asking for loopback): Firefox, Safari and older Chromium
    # do not, so the server must hold without it, and these tests check the server alone.
    "--disable-features=BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights,"
    "PrivateNetworkAccessRespectPreflightResults,LocalNetworkAccessChecks",
)
_DATABASE_FILES = (".db", ".db-wal", ".db-shm", ".db-journal")


def browser_unavailable(reason: str, environ: Mapping[str, str] | None = None) -> None:
    """Skip the browser tests, or fail them under ``CI=true``: never returns."""
    environ = os.environ if environ is None else environ
    if environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true requires the browser tests", pytrace=False)
    pytest.skip(f"{reason}: browser tests skipped")


def chromium_executable(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    wanted = environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM
    found = shutil.which(wanted)
    if found is None:
        browser_unavailable(
            f"Chromium not found at {wanted} (set {CHROMIUM_ENV}, or apt-get install chromium)", environ
        )
    return str(found)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One headless Chromium for the browser tests. Package scope, not session: Playwright's sync API
    keeps an event loop running in this thread until it stops, and later tests run loops of their own."""
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_unavailable("Playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_ARGS), timeout=60_000
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page in a fresh context (nothing shared with other tests)."""
    context = browser.new_context()
    context.set_default_timeout(30_000)
    opened = context.new_page()
    yield opened
    context.close()


# --- sites of the test's own -------------------------------------------------------------------


class Site:
    """An HTTP server on ``address``:a free port that serves ``pages`` (path -> HTML) and nothing else."""

    def __init__(self, address: str) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?", 1)[0])
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer((address, 0), Handler)
        self._server.daemon_threads = True
        self.origin = f"http://{address}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def serve(self, path: str, html: str) -> str:
        """Serve ``html`` at ``path``; its URL."""
        self.pages[path] = html
        return f"{self.origin}{path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def attacker_site() -> Iterator[Site]:
    """The attacker's web site: another origin on this machine (127.0.0.2)."""
    site = Site(ATTACKER_ADDRESS)
    yield site
    site.close()


@pytest.fixture
def loopback_site() -> Iterator[Site]:
    """A page of the user's own on 127.0.0.1 (another port than the server's: an allowed origin)."""
    site = Site("127.0.0.1")
    yield site
    site.close()


# --- the studio under attack ---------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What the server holds, read directly (no browser, no Origin)."""

    history_total: int
    history_ids: tuple[int, ...]
    settings: dict[str, Any]
    task_ids: tuple[str, ...]
    files: dict[str, tuple[int, str]] = field(repr=False)
    """Every file of the data dir and of HOME but the database: path -> (size, sha256)."""


@dataclass
class Studio(Server):
    """The seeded server (a :class:`tests.servers.Server`) and what it was seeded with."""

    home: Path
    seed: dict[str, Any]
    """The seeded generation, as the API returned it."""
    private_file: Path
    """``HOME/Pictures/private.png``: a picture of the user's, outside the data dir."""

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def snapshot(self) -> Snapshot:
        with self.client() as client:
            history = client.get("/api/history", params={"limit": 500})
            settings = client.get("/api/settings")
            tasks = client.get("/api/tasks", params={"limit": 500})
        for answer in (history, settings, tasks):
            assert answer.status_code == 200, answer.text
        files: dict[str, tuple[int, str]] = {}
        for folder in (self.data_dir, self.home):
            for path in sorted(folder.rglob("*")):
                if path.is_file() and not path.name.endswith(_DATABASE_FILES):
                    data = path.read_bytes()
                    files[str(path)] = (len(data), hashlib.sha256(data).hexdigest())
        return Snapshot(
            history_total=history.json()["total"],
            history_ids=tuple(item["id"] for item in history.json()["data"]),
            settings=settings.json()["data"],
            task_ids=tuple(task["taskId"] for task in tasks.json()["data"]),
            files=files,
        )

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def _private_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def start_studio(base: Path, timeout: float = 60) -> Studio:
    """``imagestudio serve`` with default settings on a free port, seeded; waits until healthy."""
    data_dir, home = base / "data", base / "home"
    data_dir.mkdir(parents=True)
    private = home / "Pictures" / "private.png"
    private.parent.mkdir(parents=True)
    private.write_bytes(_private_png())
    server = start_server(
        data_dir,
        {"HOME": str(home), "IMAGESTUDIO_ENGINE": "local", "IMAGESTUDIO_LOG_FORMAT": "json"},
        timeout=timeout,
    )
    body = {"prompt": SEEDED_PROMPT, "width": 128, "height": 128, "steps": 2, "seed": 11}
    answer = httpx.post(f"{server.url}/api/generate/text-to-image", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return Studio(
        url=server.url,
        port=server.port,
        data_dir=data_dir,
        process=server.process,
        log_path=server.log_path,
        home=home,
        seed=answer.json()["data"],
        private_file=private,
    )


def stop_studio(studio: Studio) -> None:
    stop_server(studio)


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[Studio]:
    running = start_studio(tmp_path)
    yield running
    stop_studio(running)
