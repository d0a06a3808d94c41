"""The Litestar application factory.

``create_app(config)`` builds the real server (adapters wired by ``bootstrap`` in the lifespan);
``create_app(services=...)`` serves use cases built elsewhere, which is how tests hand in fakes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import SecurityScheme

from imagestudio._version import __version__
from imagestudio.bootstrap import bootstrap
from imagestudio.config import Config
from imagestudio.http.asyncapi import ASYNCAPI_PATH, asyncapi_route
from imagestudio.http.cache import ResponseCache
from imagestudio.http.controllers import (
    GenerateController,
    HealthController,
    HistoryController,
    ImagesController,
    SettingsController,
    TasksController,
    provide_services,
)
from imagestudio.http.docs import DocsAssets, RedocPage, SwaggerPage, docs_router
from imagestudio.http.errors import EXCEPTION_HANDLERS
from imagestudio.http.gallery import GalleryController
from imagestudio.http.metadata import InspectController
from imagestudio.http.models import ModelsController
from imagestudio.http.openapi import DocumentComponents
from imagestudio.http.security import HostAllowlist, guard
from imagestudio.http.websocket import generation_socket
from imagestudio.services import Services

__all__ = ["cors_config", "create_app"]

DESCRIPTION = """Local-first image studio backend.

Every answer is an envelope: `{"success": true, "data": ...}` or
`{"success": false, "error": "...", "code": "...", "details": {...}}`.
Progress of every generation streams over the WebSocket `/ws/generation` (`?taskId=` for one task,
`?after=` to replay); its messages are described by the AsyncAPI document at `{asyncapi}`.

Every request must name this server in `Host`: `localhost`, `127.0.0.1`, `[::1]` (any port), the
`--host` address or a name in `IMAGESTUDIO_ALLOWED_HOSTS` (else 400 `INVALID_HOST`). Browser pages
must come from an allowed origin (`IMAGESTUDIO_CORS_ORIGINS`); a refused CORS preflight is 403
`FORBIDDEN`. State-changing requests (POST, PUT, PATCH, and DELETE with a body) must send
`Content-Type: application/json` (else 415 `UNSUPPORTED_MEDIA_TYPE`). With `IMAGESTUDIO_API_TOKEN`
set, everything but `/health` and these docs needs `Authorization: Bearer <token>` or
`X-API-Key: <token>` (else 401 `UNAUTHORIZED`); the WebSocket also takes `?token=`. With
`IMAGESTUDIO_RATE_LIMIT` set, a client over its limit gets 429 `RATE_LIMITED` with `Retry-After`.
"""

_SECURITY_SCHEMES = {
    "BearerToken": SecurityScheme(
        type="http", scheme="bearer", description="`Authorization: Bearer <IMAGESTUDIO_API_TOKEN>`"
    ),
    "ApiKey": SecurityScheme(
        type="apiKey", name="X-API-Key", security_scheme_in="header", description="The same token"
    ),
}


def cors_config(origins: Sequence[str]) -> CORSConfig:
    """CORS for the configured origins; ``*`` in an origin matches a port (``http://localhost:*``)."""
    patterns = []
    for origin in origins:
        escaped = re.escape(origin)
        patterns.append(escaped.replace(r":\*", r"(?::[0-9]{1,5})?").replace(r"\*", r"[^/]*"))
    return CORSConfig(
        allow_origin_regex="^(?:" + "|".join(patterns) + ")$" if patterns else None,
        allow_origins=[],
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type", "Authorization", "X-API-Key", "Idempotency-Key", "Prefer"],
        expose_headers=["Location", "Retry-After"],
        max_age=600,
    )


def create_app(config: Config | None = None, services: Services | None = None) -> Litestar:
    """Build the application. Nothing is opened until the lifespan starts."""
    config = config or Config()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # big bodies are decoded in worker threads, two at a time (http/schemas.py: prepare_body)
        app.state.body_limiter = anyio.CapacityLimiter(2)
        if services is not None:
            services.events.bind()
            app.state.services = services
            yield
            return
        async with bootstrap(config) as built:
            app.state.services = built
            yield

    cors = cors_config(config.cors_origins)
    hosts = HostAllowlist(config.host, config.allowed_hosts)  # a bad name is a ConfigError, now
    token = config.api_token.reveal() if config.api_token else None
    # everything but /health (and the docs) needs the token when one is set
    docs_assets = DocsAssets()
    protected = Router(
        "/",
        route_handlers=[
            GenerateController,
            HistoryController,
            SettingsController,
            ImagesController,
            TasksController,
            ModelsController,
            GalleryController,
            InspectController,
            generation_socket,
        ],
        security=[{"BearerToken": []}, {"ApiKey": []}] if token else None,
    )
    app = Litestar(
        route_handlers=[HealthController, asyncapi_route(token=token is not None), protected],
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        request_max_body_size=config.max_body_size,
        openapi_config=OpenAPIConfig(
            title="imagestudio",
            version=__version__,
            description=DESCRIPTION.replace("{asyncapi}", ASYNCAPI_PATH),
            path="/",
            # the docs load nothing from another host (http/docs.py)
            render_plugins=[SwaggerPage(docs_assets), RedocPage(docs_assets)],
            openapi_router=docs_router(docs_assets),
            # DocumentComponents: the request bodies' schemas beside those Litestar generates
            components=DocumentComponents(security_schemes=dict(_SECURITY_SCHEMES))
            if token
            else DocumentComponents(),
        ),
        logging_config=None,  # logging is configured once, by imagestudio.log
        debug=False,
    )
    # CORS is ShellGuard's too (http/security.py): it runs before routing, the Host check first
    return guard(
        app, cors=cors, hosts=hosts, token=token, rate_limit=config.rate_limit, response_cache=ResponseCache()
    )
