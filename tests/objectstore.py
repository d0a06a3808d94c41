"""An S3-compatible server for tests: moto's standalone server, a real process on loopback.

``MotoServer.start()`` runs ``python -m moto.server`` on a free loopback port and waits until it
answers; each test takes a bucket of its own (``new_bucket``), so tests never meet. ``environment``
is what a process needs to reach it through the usual ``AWS_*`` variables (moto accepts any
credentials; the ones here are made up).

Without moto installed (the ``test`` extra has ``moto[server]``) the object store tests skip,
saying so in the summary; with ``CI=true`` they fail instead, because CI must run them.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import free_port

__all__ = ["MotoServer", "moto_unavailable"]

_ACCESS_KEY = "imagestudio-test-key"
_SECRET_KEY = "imagestudio-test-secret-0123456789"  # noqa: S105 - made up; moto checks nothing


def moto_unavailable(reason: str, environ: Mapping[str, str] | None = None) -> None:
    """Skip the object store tests, or fail them under ``CI=true``: never returns."""
    environ = os.environ if environ is None else environ
    if environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true requires the object store tests", pytrace=False)
    pytest.skip(f"{reason}: object store tests skipped")


@dataclass
class MotoServer:
    """A running moto server: its endpoint and process."""

    endpoint: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, log_dir: Path, timeout: float = 30) -> MotoServer:
        """Start moto on a free loopback port (skip, or fail under CI, without moto)."""
        if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
            moto_unavailable("moto[server] is not installed (pip install -e '.[test]')")
        port = free_port()
        log_path = log_dir / f"moto-{port}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = cls(endpoint=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                moto_unavailable(f"moto's server exited with {process.returncode}: {server.log_tail()}")
            try:
                httpx.get(f"{server.endpoint}/moto-api/", timeout=1)
                return server
            except httpx.TransportError:
                time.sleep(0.1)
        server.stop()
        moto_unavailable(f"moto's server did not answer within {timeout:g} s: {server.log_tail()}")
        raise AssertionError("unreachable")  # moto_unavailable never returns

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def client(self) -> Any:
        """A boto3 S3 client of this server (moto's own dependency): what the tests look with,
        beside the adapter under test (moto refuses unsigned reads)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=_ACCESS_KEY,
            aws_secret_access_key=_SECRET_KEY,
            region_name="us-east-1",
        )

    def new_bucket(self) -> str:
        """A fresh, empty bucket."""
        name = f"imagestudio-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def environment(self) -> dict[str, str]:
        """The ``AWS_*`` variables that point a process at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": _ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": _SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object of ``bucket`` under ``prefix``, by key, read straight from the server."""
        client = self.client()
        keys = [
            item["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]
        return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}

    def headers(self, bucket: str, key: str) -> dict[str, str]:
        """The HTTP headers the server answers a ``GET`` of the object with (lower-case names)."""
        answer = self.client().get_object(Bucket=bucket, Key=key)
        return dict(answer["ResponseMetadata"]["HTTPHeaders"])

    def plant(self, bucket: str, key: str, data: bytes = b"planted") -> None:
        """Put an object there as something else than the adapter would (a user, a copy)."""
        self.client().put_object(Bucket=bucket, Key=key, Body=data)
