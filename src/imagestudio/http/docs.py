"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served from this
server alone: a page asks no other host for anything (no CDN, no web font, no favicon, no
validator badge), so it works on a machine without network.

- **Whose files**: Swagger UI's and ReDoc's builds come from the ``drf-spectacular-sidecar``
  package (a dependency: it repackages the npm releases of ``swagger-ui-dist`` and ``redoc`` every
  month). It is found with :func:`importlib.util.find_spec`, which does not import it (its
  ``__init__`` imports Django, which it declares but we never load). The small start-up scripts
  and the style sheet are ours, in ``http/static/``: the pages have no inline script or style.
- **Where**: ``/docs/assets/<version>/<name>``, a fixed list of names. ``<version>`` is the
  package's version and a hash of our own files, so every answer may be cached for a year
  (``immutable``); a page names the current version and is itself ``no-cache``. Another version is
  404. The assets are as public as the pages (``http/auth.py``); Host checks, CORS and the rate
  limit apply as to every route (``http/security.py``).
- **The policy**: every answer of the documentation router (the pages, ``/openapi.json``, the
  assets) carries a ``Content-Security-Policy``: scripts, styles, the document and images from
  this origin only, nothing inline, nothing may frame the pages, no form may post anywhere; and
  ``X-Content-Type-Options: nosniff``. ReDoc's page adds what ReDoc needs: a nonce, new in every
  answer, for the ``<style>`` elements its scripts make (``static/redoc-init.js`` hands it to
  them), and ``worker-src blob:`` for its search worker. Swagger UI needs nothing more.
- **ReDoc's logo**: ReDoc 2 shows Redocly's logo from Redocly's CDN in its side bar, and has no
  option to leave it out; the bundle is served with that one URL replaced by ``data:,`` (the
  image fails, and ReDoc drops it). Swagger UI's validator badge is off (``validatorUrl: null``).

The pages are Litestar's render plugins with their own ``render``: Litestar's templates load the
files from CDNs and start the UI with an inline script that embeds the whole document.
"""

from __future__ import annotations

import hashlib
import html
import importlib.metadata
import importlib.resources
import importlib.util
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import anyio
from litestar import Request, Response, Router, get
from litestar.datastructures import ResponseHeader
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.params import FromPath
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ASSETS_PATH",
    "CONTENT_SECURITY_POLICY",
    "DocsAssets",
    "RedocPage",
    "SwaggerPage",
    "content_security_policy",
    "docs_router",
]

ASSETS_PATH = "/docs/assets"
"""Where the pages' files are served: ``ASSETS_PATH/<version>/<name>``."""

DISTRIBUTION = "drf-spectacular-sidecar"
_PACKAGE = "drf_spectacular_sidecar"
_STATIC = "static/drf_spectacular_sidecar"


def content_security_policy(*, style_nonce: str | None = None, blob_workers: bool = False) -> str:
    """The policy of a documentation answer: everything from this origin only, nothing inline.

    ``style_nonce`` also allows the ``<style>`` elements that carry it (ReDoc's styled-components
    make theirs at run time); ``blob_workers`` allows workers made from ``blob:`` URLs (ReDoc's
    search index). Both are things only a script already allowed to run can do.
    """
    styles = "style-src 'self'" + (f" 'nonce-{style_nonce}'" if style_nonce else "")
    directives = [
        "default-src 'none'",
        "script-src 'self'",
        styles,
        "img-src 'self' data:",
        "connect-src 'self'",
        *(["worker-src blob:"] if blob_workers else []),
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
    return "; ".join(directives)


CONTENT_SECURITY_POLICY = content_security_policy()
"""The policy of Swagger UI's page, the document and the assets."""

_POLICY_KEY = "imagestudio.content_security_policy"
"""Where a page puts its own policy in the request's scope for :class:`_PolicyHeader`."""

_YEAR = 365 * 24 * 3600
_IMMUTABLE = f"public, max-age={_YEAR}, immutable"
_MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


@dataclass(frozen=True, slots=True)
class _Asset:
    ours: bool
    """In ``imagestudio/http/static`` (else in the package's static folder)."""
    path: str
    rewrites: tuple[tuple[bytes, bytes], ...] = ()
    """Replacements made in the file as it is read."""

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[Path(self.path).suffix]


_ASSETS = {
    "swagger-ui-bundle.js": _Asset(ours=False, path="swagger-ui-dist/swagger-ui-bundle.js"),
    "swagger-ui.css": _Asset(ours=False, path="swagger-ui-dist/swagger-ui.css"),
    "favicon-32x32.png": _Asset(ours=False, path="swagger-ui-dist/favicon-32x32.png"),
    "redoc.standalone.js": _Asset(
        ours=False,
        path="redoc/bundles/redoc.standalone.js",
        # Redocly's logo from its CDN: as "data:," it fails to load and ReDoc drops it (onError)
        rewrites=((b'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"', b'src:"data:,"'),),
    ),
    "swagger-init.js": _Asset(ours=True, path="swagger-init.js"),
    "redoc-init.js": _Asset(ours=True, path="redoc-init.js"),
    "docs.css": _Asset(ours=True, path="docs.css"),
}


class DocsAssets:
    """The files the pages load, found on first use and kept in memory once read (about 3 MB)."""

    def __init__(self) -> None:
        self._loaded: dict[str, bytes] = {}

    @cached_property
    def _package_folder(self) -> Path | None:
        spec = importlib.util.find_spec(_PACKAGE)  # finds it without running its __init__
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations))) / _STATIC

    def _read(self, asset: _Asset) -> bytes | None:
        if asset.ours:
            return importlib.resources.files(__package__).joinpath("static", asset.path).read_bytes()
        if self._package_folder is None:
            return None
        try:
            data = (self._package_folder / asset.path).read_bytes()
        except FileNotFoundError:
            return None
        for old, new in asset.rewrites:
            data = data.replace(old, new)
        return data

    @cached_property
    def version(self) -> str:
        """The package's version and a hash of our own files: a new one of either is a new URL."""
        try:
            upstream = importlib.metadata.version(DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            upstream = "missing"
        digest = hashlib.blake2b(digest_size=4)
        for name, asset in sorted(_ASSETS.items()):
            if asset.ours:
                digest.update(name.encode() + b"\0" + (self._read(asset) or b""))
        return f"{upstream}-{digest.hexdigest()}"

    def url(self, name: str, root_path: str = "") -> str:
        """The URL of the asset ``name`` (one of the fixed list)."""
        if name not in _ASSETS:
            raise KeyError(name)
        return f"{root_path}{ASSETS_PATH}/{self.version}/{name}"

    async def load(self, version: str, name: str) -> tuple[bytes, str] | None:
        """The bytes and media type of ``name`` at ``version``; ``None`` for anything else."""
        asset = _ASSETS.get(name)
        if asset is None or version != self.version:
            return None
        data = self._loaded.get(name)
        if data is None:
            data = await anyio.to_thread.run_sync(self._read, asset)
            if data is None:
                return None
            self._loaded[name] = data
        return data, asset.media_type


def _page(title: str, head: list[str], body: list[str]) -> bytes:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            *head,
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    ).encode()


def _title(openapi_schema: dict[str, Any]) -> str:
    return str(openapi_schema.get("info", {}).get("title", "API"))


def _set_policy(request: Request[Any, Any, Any], policy: str) -> None:
    cast("dict[str, Any]", request.scope)[_POLICY_KEY] = policy


def _root(request: Request[Any, Any, Any]) -> str:
    """The path the application is mounted at ("" at the root), for the pages' URLs."""
    return html.escape(str(request.scope.get("root_path", "")).rstrip("/"))


class SwaggerPage(SwaggerRenderPlugin):
    """Swagger UI from :class:`DocsAssets`, started by ``static/swagger-init.js``."""

    def __init__(self, assets: DocsAssets, *, path: str = "/docs") -> None:
        super().__init__(path=path)
        self.assets = assets

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        root = _root(request)
        url = self.assets.url
        return _page(
            _title(openapi_schema),
            [
                f'<link rel="icon" type="image/png" href="{url("favicon-32x32.png", root)}">',
                f'<link rel="stylesheet" href="{url("swagger-ui.css", root)}">',
                f'<link rel="stylesheet" href="{url("docs.css", root)}">',
            ],
            [
                f'<div id="swagger-ui" data-openapi-url="{root}/openapi.json"></div>',
                f'<script src="{url("swagger-ui-bundle.js", root)}"></script>',
                f'<script src="{url("swagger-init.js", root)}"></script>',
            ],
        )

    def receive_router(self, router: Router) -> None:
        """Litestar's plugin adds an OAuth2 redirect page with an inline script here; the API has
        no OAuth2 flow, so it is left out."""


class RedocPage(RedocRenderPlugin):
    """ReDoc from :class:`DocsAssets`, started by ``static/redoc-init.js``."""

    def __init__(self, assets: DocsAssets, *, path: str = "/redoc") -> None:
        super().__init__(path=path, google_fonts=False)
        self.assets = assets

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        root = _root(request)
        url = self.assets.url
        nonce = secrets.token_urlsafe(18)  # a new one for every answer
        _set_policy(request, content_security_policy(style_nonce=nonce, blob_workers=True))
        return _page(
            _title(openapi_schema),
            [
                '<link rel="icon" href="data:,">',  # none: else the browser asks for /favicon.ico
                f'<link rel="stylesheet" href="{url("docs.css", root)}">',
            ],
            [
                f'<div id="redoc" data-openapi-url="{root}/openapi.json" data-style-nonce="{nonce}"></div>',
                f'<script src="{url("redoc-init.js", root)}"></script>',  # first: see the file
                f'<script src="{url("redoc.standalone.js", root)}"></script>',
            ],
        )


def _asset_handler(assets: DocsAssets) -> HTTPRouteHandler:
    @get(
        f"{ASSETS_PATH}/{{version:str}}/{{name:str}}",
        include_in_schema=False,
        name="docs-asset",
    )
    async def docs_asset(version: FromPath[str], name: FromPath[str]) -> Response[bytes]:
        found = await assets.load(version, name)
        if found is None:
            raise NotFoundException()
        data, media_type = found
        return Response(data, media_type=media_type, headers={"Cache-Control": _IMMUTABLE})

    return docs_asset


class _PolicyHeader:
    """Route middleware: the answer's ``Content-Security-Policy``, the page's own (with its nonce)
    or :data:`CONTENT_SECURITY_POLICY`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                policy = cast("dict[str, Any]", scope).get(_POLICY_KEY, CONTENT_SECURITY_POLICY)
                headers = [*message.get("headers", ()), (b"content-security-policy", policy.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_policy)


class _DocsRouter(Router):
    """Serves /docs, /redoc, /openapi.json and the assets at the root.

    Litestar's OpenAPI router adds a catch-all that answers unknown one-segment paths with an
    HTML 404; at the root that would hide our JSON error shape, so it is not registered.
    """

    def register(self, value: Any) -> list[Any]:
        if getattr(value, "handler_name", "") == "handle_schema_path_not_found":
            return []
        result: list[Any] = super().register(value)
        return result


def docs_router(assets: DocsAssets) -> Router:
    """The router of the documentation: the render plugins' pages, the document and the assets,
    every answer with a ``Content-Security-Policy``."""
    return _DocsRouter(
        "/",
        route_handlers=[_asset_handler(assets)],
        include_in_schema=False,
        middleware=[_PolicyHeader],
        response_headers=[
            ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
            ResponseHeader(name="Referrer-Policy", value="no-referrer"),
            ResponseHeader(name="Cache-Control", value="no-cache"),
        ],
    )
