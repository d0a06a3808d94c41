"""The README's team deployment works as written: its environment file and its Procfile, started by
honcho, make a team (two API servers, two workers) on PostgreSQL and a bucket, where an image asked
of one server is made by a worker and served by the other.

Only what cannot be the same here is changed, value by value: the database (a fresh schema of the
test server), the bucket and its endpoint (moto's server), Runware (the fake, whose URL is added),
the ports (free ones) and the data dirs (under the test's folder).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.databases import PostgresServer
from tests.objectstore import MotoServer
from tests.servers import FakeRunwareProcess, free_port, scrubbed_environment, start_fake_runware

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

README = Path(__file__).resolve().parents[2] / "README.md"


def _block(marker: str) -> str:
    text = README.read_text()
    found = re.search(r"```[a-z]*\n(.*?)```", text[text.index(marker) :], re.DOTALL)
    assert found is not None, f"the README's block after {marker} is missing"
    return found.group(1)


def _env_file(url: str, moto: MotoServer, bucket: str, runware: FakeRunwareProcess) -> str:
    values = dict(
        line.split("=", 1) for line in _block("<!-- team-env -->").splitlines() if line and line[0] != "#"
    )
    expected = {
        "IMAGESTUDIO_DATABASE_URL",
        "IMAGESTUDIO_STORAGE_URL",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_ALLOW_HTTP",
        "RUNWARE_API_KEY",
    }
    assert set(values) == expected
    values["IMAGESTUDIO_DATABASE_URL"] = url
    values["IMAGESTUDIO_STORAGE_URL"] = values["IMAGESTUDIO_STORAGE_URL"].replace("studio-images", bucket)
    values.update(moto.environment())
    values.update(runware.env)  # the key and the fake's URL, which the README does not need
    return "".join(f"{name}={value}\n" for name, value in values.items())


def _procfile(root: Path) -> tuple[str, dict[str, int]]:
    text = _block("<!-- team-procfile -->")
    ports = {}
    for port in re.findall(r"--port (\d+)", text):
        ports[port] = free_port()
        text = text.replace(f"--port {port}", f"--port {ports[port]}")
    text = text.replace("--data-dir team/", f"--data-dir {root}/team/")
    assert text.count("imagestudio serve --role api") == 2
    assert text.count("imagestudio worker") == 2
    return text, {name: port for name, port in zip(("a", "b"), ports.values(), strict=True)}


def test_the_readme_team_deployment_runs_as_written(
    postgres: PostgresServer, moto: MotoServer, tmp_path: Path
) -> None:
    runware = start_fake_runware()
    bucket = moto.new_bucket()
    with postgres.schema() as url:
        (tmp_path / "team.env").write_text(_env_file(url, moto, bucket, runware))
        procfile, ports = _procfile(tmp_path)
        (tmp_path / "Procfile").write_text(procfile)
        bin_dir = str(Path(sys.executable).parent)
        environment = scrubbed_environment({"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"})
        log = tmp_path / "honcho.log"
        with open(log, "wb") as out:
            honcho = subprocess.Popen(
                [str(Path(bin_dir) / "honcho"), "start", "-f", "Procfile", "-e", "team.env"],
                cwd=tmp_path,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            for port in ports.values():
                _healthy(port, honcho, log)
            _until_workers(log, honcho)
            made = httpx.post(
                f"http://127.0.0.1:{ports['a']}/api/generate/text-to-image",
                json={"prompt": "a lighthouse at dusk"},
                timeout=60,
            )
            assert made.status_code == 200, made.text
            generation = made.json()["data"]
            listed = httpx.get(f"http://127.0.0.1:{ports['b']}/api/history", timeout=10).json()
            assert [g["id"] for g in listed["data"]] == [generation["id"]]
            image = httpx.get(f"http://127.0.0.1:{ports['b']}{generation['filePath']}", timeout=10)
            assert image.status_code == 200
            assert image.content in moto.objects(bucket).values()
        finally:
            os.killpg(honcho.pid, signal.SIGTERM)
            try:
                honcho.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(honcho.pid, signal.SIGKILL)
                honcho.wait()
            runware.stop()


def _healthy(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"port {port} not healthy: {log.read_text(errors='replace')[-3000:]}")


def _until_workers(log: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.read_text(errors="replace").count("worker started") >= 2:
            return
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        time.sleep(0.1)
    raise AssertionError(f"the workers did not start: {log.read_text(errors='replace')[-3000:]}")
