"""The baseline of P4: a bare Litestar hello-world app, served the way ``imagestudio serve`` serves.

``python bench/hello_app.py --port N`` runs it with the same ``uvicorn.run`` call as
``imagestudio.http.server.serve`` (one worker, the same loop and HTTP implementation uvicorn picks in
this environment, ``log_config=None``, log level ``info``, no access log), so that the only
difference measured is the application.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn
from litestar import Litestar, get

__all__ = ["app", "main"]


@get("/")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


app = Litestar(route_handlers=[hello], logging_config=None, debug=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args(argv)
    uvicorn.run(
        app,
        host=options.host,
        port=options.port,
        log_config=None,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
