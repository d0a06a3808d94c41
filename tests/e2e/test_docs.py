"""``/docs`` and ``/redoc`` over real HTTP: pages with no inline script or style and no URL of
another host, a strict ``Content-Security-Policy`` on every documentation answer, and the assets
served from the installed ``drf-spectacular-sidecar`` package (``http/docs.py``) with long caching
under a versioned URL, as public as the pages. The browser's side is ``tests/browser/test_docs_pages.py``."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import imagestudio
from tests.servers import Server, start_server, stop_server

pytestmark = pytest.mark.e2e

TOKEN = "docs-test-token-0123456789"  # noqa: S105 - made up
STRICT = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
    "form-action": "'none'",
}
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}
SIDECAR = Path(importlib.util.find_spec("drf_spectacular_sidecar").submodule_search_locations[0])  # type: ignore[union-attr]
UPSTREAM = {
    "swagger-ui-bundle.js": "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger-ui.css": "swagger-ui-dist/swagger-ui.css",
    "favicon-32x32.png": "swagger-ui-dist/favicon-32x32.png",
    "redoc.standalone.js": "redoc/bundles/redoc.standalone.js",
}
OURS = {"swagger-init.js", "redoc-init.js", "docs.css"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("docs") / "data")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("docs-token") / "data", {"IMAGESTUDIO_API_TOKEN": TOKEN})
    yield running
    stop_server(running)


def policy(response: httpx.Response) -> dict[str, str]:
    directives = (
        part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";")
    )
    return {name: value for name, value in directives}


def assets_of(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', html)


def test_the_pages_load_only_files_of_this_server(server: Server) -> None:
    for path in ("/docs", "/redoc"):
        page = httpx.get(f"{server.url}{path}")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        html = page.text
        urls = re.findall(r'(?:src|href)="([^"]*)"', html)
        assert urls
        assert all(url.startswith("/") or url == "data:," for url in urls), urls
        assert "//" not in html  # no URL of another host, with or without a scheme
        scripts = re.findall(r"<script[^>]*>", html)
        assert scripts
        assert all(' src="/docs/assets/' in tag for tag in scripts), scripts
        assert re.search(r"<script[^>]*>[^<]", html) is None  # no inline script
        assert "<style" not in html  # no inline style
        assert "style=" not in html
        assert 'data-openapi-url="/openapi.json"' in html


def test_swagger_and_the_document_carry_the_strict_policy(server: Server) -> None:
    for path in ("/docs", "/openapi.json"):
        answer = httpx.get(f"{server.url}{path}")
        assert answer.status_code == 200
        assert policy(answer) == STRICT, path
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["cache-control"] == "no-cache"


def test_redoc_adds_a_nonce_for_its_styles_and_blob_workers(server: Server) -> None:
    first, second = httpx.get(f"{server.url}/redoc"), httpx.get(f"{server.url}/redoc")
    nonces = []
    for answer in (first, second):
        rules = policy(answer)
        style = re.fullmatch(r"'self' 'nonce-([A-Za-z0-9_-]{24})'", rules.pop("style-src"))
        assert style is not None
        assert rules.pop("worker-src") == "blob:"
        assert rules == {name: value for name, value in STRICT.items() if name != "style-src"}
        assert f'data-style-nonce="{style.group(1)}"' in answer.text
        nonces.append(style.group(1))
    assert nonces[0] != nonces[1]  # a new one for every answer


def test_the_assets_are_the_packages_files_cached_for_a_year(server: Server) -> None:
    pages = httpx.get(f"{server.url}/docs").text + httpx.get(f"{server.url}/redoc").text
    urls = sorted(set(assets_of(pages)))
    names = {url.rsplit("/", 1)[1] for url in urls}
    assert names == set(UPSTREAM) | OURS
    versions = {url.split("/")[3] for url in urls}
    assert len(versions) == 1
    (version,) = versions
    installed = subprocess.run(
        [sys.executable, "-c", "import importlib.metadata as m; print(m.version('drf-spectacular-sidecar'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert version.startswith(f"{installed}-")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for url in urls:
            name = url.rsplit("/", 1)[1]
            answer = client.get(url)
            assert answer.status_code == 200, url
            assert answer.headers["content-type"] == MEDIA_TYPES[Path(name).suffix], url
            assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert policy(answer) == STRICT, url
            if name in UPSTREAM and name != "redoc.standalone.js":
                assert (
                    answer.content
                    == (SIDECAR / "static/drf_spectacular_sidecar" / UPSTREAM[name]).read_bytes()
                )
            if name in OURS:
                assert (
                    answer.content == (Path(imagestudio.__file__).parent / "http/static" / name).read_bytes()
                )


def test_redoc_is_served_without_its_cdn_logo(server: Server) -> None:
    """ReDoc's bundle names Redocly's logo on a CDN; the served copy names ``data:,`` instead and is
    otherwise the package's file."""
    (url,) = [
        u for u in assets_of(httpx.get(f"{server.url}/redoc").text) if u.endswith("/redoc.standalone.js")
    ]
    served = httpx.get(f"{server.url}{url}").content
    original = (SIDECAR / "static/drf_spectacular_sidecar" / UPSTREAM["redoc.standalone.js"]).read_bytes()
    assert b"cdn.redoc.ly" in original
    assert b"cdn.redoc.ly" not in served
    assert served == original.replace(b'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"', b'src:"data:,"')


def test_another_version_or_name_is_not_found(server: Server) -> None:
    (url,) = [u for u in assets_of(httpx.get(f"{server.url}/docs").text) if u.endswith("/swagger-ui.css")]
    version = url.split("/")[3]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path in (
            "/docs/assets/0.0.0-00000000/swagger-ui.css",
            f"/docs/assets/{version}/swagger-ui.js.map",
            f"/docs/assets/{version}/oauth2-redirect.html",
            f"/docs/assets/{version}/..%2F..%2F__init__.py",
            f"/docs/assets/{version}",
            "/docs/oauth2-redirect.html",
            "/oauth2-redirect.html",
        ):
            answer = client.get(path)
            assert answer.status_code == 404, path
            assert answer.json() == {"success": False, "error": "Resource not found", "code": "NOT_FOUND"}


def test_with_a_token_the_docs_and_their_assets_stay_open(token_server: Server) -> None:
    with httpx.Client(base_url=token_server.url, timeout=30) as client:
        urls = sorted(set(assets_of(client.get("/docs").text + client.get("/redoc").text)))
        assert len(urls) == 7
        for path in ("/docs", "/redoc", "/openapi.json", *urls):
            assert client.get(path).status_code == 200, path
        assert client.get("/api/history").status_code == 401
        # a made-up asset path is a 404, not a way around the token
        assert client.get(urls[0].rsplit("/", 1)[0] + "/nothing.js").status_code == 404


def test_the_open_asset_prefix_leads_nowhere_else(token_server: Server) -> None:
    """A raw request with dot segments under the open prefix still needs the token."""
    for target in ("/docs/assets/x/../../api/history", "/docs/assets/./../../api/settings"):
        request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{token_server.port}\r\nConnection: close\r\n\r\n"
        with socket.create_connection(("127.0.0.1", token_server.port), timeout=30) as connection:
            connection.sendall(request.encode())
            received = b""
            while chunk := connection.recv(65536):
                received += chunk
        status = received.split(b"\r\n", 1)[0]
        assert status == b"HTTP/1.1 401 Unauthorized", (target, status)


def test_serving_the_docs_does_not_import_django(tmp_path: Path) -> None:
    """The package declares Django; we only read its files, found without importing it."""
    probe = f"""
import json, sys
from pathlib import Path
from litestar.testing import TestClient
from imagestudio.config import Config
from imagestudio.http.app import create_app
app = create_app(Config(data_dir=Path({str(tmp_path)!r})))
with TestClient(app, base_url="http://127.0.0.1:8000") as client:
    import re
    for page in ("/docs", "/redoc"):
        for url in re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', client.get(page).text):
            assert client.get(url).status_code == 200, url
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] == "django")))
"""
    environment = {**os.environ, "PYTHONPATH": str(Path(imagestudio.__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout.splitlines()[-1]) == []
