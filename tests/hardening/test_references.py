"""Every input-image reference a client can send stays inside storage, or is refused.

A sentinel folder outside storage holds a valid image; symbolic links planted in storage lead to
it. A Python audit hook sees every ``open`` the process makes (``open``, ``os.open``, Pillow's
reads), follows links itself, and records any that reaches the sentinel or a system file. The
property: whatever string arrives as ``seedImage`` or ``imagePath``, the answer is 200 only when
it names the one real image in storage (a name of the storage's own scheme, ``YYYY-MM-DD/<32
hex>.png``), else 400 or 404, and nothing outside storage is opened. A user's own file in storage
(``ok/inside.png``) is not an input: only images the server made are.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from PIL import Image

from imagestudio.config import Config
from imagestudio.http.app import create_app
from tests.assertions import assert_error
from tests.hardening.conftest import BASE_URL

Client = TestClient  # type: ignore[type-arg]
SYSTEM_FILES = ("/etc/passwd", "/etc/shadow", "/etc/hostname", "/proc/self/environ")
REAL_DAY = "2026-01-02"
OWN_NAME = "0123456789abcdef0123456789abcdef.png"
REAL_KEY = f"{REAL_DAY}/{OWN_NAME}"
LINK_IN_KEY = f"{REAL_DAY}/{'1' * 32}.png"
LINK_OUT_KEY = f"{REAL_DAY}/{'2' * 32}.png"


class OpenWatch:
    """Records every ``open`` audit event whose target (links followed) lies under a watched path.

    Audit hooks cannot be removed, so one instance serves the whole session; ``watching`` turns
    it on for one test at a time.
    """

    def __init__(self) -> None:
        self.watched: tuple[str, ...] = ()
        self.seen: list[str] = []
        self._busy = threading.local()
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or not self.watched or getattr(self._busy, "flag", False):
            return
        target = args[0]
        if isinstance(target, int):
            return  # an already open descriptor: its path was checked when it was opened
        self._busy.flag = True
        try:
            path = os.fsdecode(target)
            real = os.path.realpath(path)
            if any(p == w or p.startswith(w + os.sep) for p in (path, real) for w in self.watched):
                self.seen.append(path)
        except (TypeError, ValueError, OSError):
            pass
        finally:
            self._busy.flag = False

    def watching(self, *paths: Path | str) -> OpenWatch:
        self.watched = tuple(os.path.realpath(p) for p in paths)
        self.seen = []
        return self

    def stop(self) -> None:
        self.watched = ()


_WATCH: OpenWatch | None = None


def _watch() -> OpenWatch:
    global _WATCH
    if _WATCH is None:
        _WATCH = OpenWatch()
    return _WATCH


def _png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


class Planted:
    """A data dir whose storage holds one real image and links that lead out of it."""

    def __init__(self, base: Path) -> None:
        self.data_dir = base / "data"
        self.storage = self.data_dir / "generated"
        self.sentinel = base / "outside"
        self.sentinel.mkdir(parents=True)
        (self.sentinel / "secret.png").write_bytes(_png())
        (self.sentinel / "nested").mkdir()
        (self.sentinel / "nested" / "deep.png").write_bytes(_png())
        (self.storage / "ok").mkdir(parents=True)
        (self.storage / "ok" / "inside.png").write_bytes(_png())  # a user's own file: not an input
        (self.storage / REAL_DAY).mkdir()
        self.inside = self.storage / REAL_KEY
        self.inside.write_bytes(_png())
        (self.storage / LINK_IN_KEY).symlink_to(self.inside)  # our name, leading to our image: fine
        (self.storage / LINK_OUT_KEY).symlink_to(self.sentinel / "secret.png")
        (self.sentinel / OWN_NAME).write_bytes(_png())  # reached through the day-folder link below
        links = {
            "evil.png": self.sentinel / "secret.png",
            "evil-dir": self.sentinel,
            "ok/evil.png": self.sentinel / "secret.png",
            "ok/up": self.sentinel.parent,
            "passwd.png": Path("/etc/passwd"),
            "relative.png": Path("../../outside/secret.png"),
            "loop-a": self.storage / "loop-b",
            "loop-b": self.storage / "loop-a",
            "inner-link.png": self.inside,  # a link that stays inside storage is fine
        }
        for name, target in links.items():
            (self.storage / name).symlink_to(target)
        day = self.storage / "2026-01-01"
        day.symlink_to(self.sentinel)  # a day folder swapped for a link

    def legitimate(self, reference: str) -> bool:
        """Whether ``reference`` names the real image inside storage (the oracle of the property):
        one of the two names of our scheme that lead to it, as a key, a ``/generated/`` path or an
        absolute path in storage, with ``.`` and empty parts allowed and ``..`` never."""
        text = reference.replace("\\", "/")
        if "\x00" in text or len(text) > 4096:
            return False
        if text.startswith("/generated/"):
            text = text.removeprefix("/generated/")
        elif text.startswith("/"):
            if not text.startswith(str(self.storage) + "/"):
                return False
            text = text.removeprefix(str(self.storage) + "/")
        parts = [part for part in text.split("/") if part not in ("", ".")]
        return ".." not in reference.replace("\\", "/").split("/") and "/".join(parts) in (
            REAL_KEY,
            LINK_IN_KEY,
        )


@pytest.fixture
def planted(tmp_path: Path) -> Iterator[tuple[Client, Planted]]:
    world = Planted(tmp_path)
    app = create_app(Config(data_dir=world.data_dir))
    with TestClient(app, base_url=BASE_URL) as client:
        yield client, world


def _tricks(world: Planted) -> st.SearchStrategy[str]:
    """References built to escape: traversal, encodings, absolute paths, links, NULs, long names."""
    sentinel = str(world.sentinel / "secret.png")
    storage = str(world.storage)
    fixed = [
        "../outside/secret.png",
        "../../outside/secret.png",
        "ok/../../outside/secret.png",
        "..\\..\\outside\\secret.png",
        "%2e%2e/%2e%2e/outside/secret.png",
        "%2E%2E%2F%2E%2E%2Foutside%2Fsecret.png",
        "..%2f..%2foutside%2fsecret.png",
        "\uff0e\uff0e/\uff0e\uff0e/outside/secret.png",  # fullwidth dots are just a name
        sentinel,
        "//" + sentinel.lstrip("/"),
        sentinel.replace("/", "\\"),
        storage + "/../outside/secret.png",
        storage + "/evil.png",
        storage + "/ok/inside.png",
        storage + "/./ok/inside.png",
        "evil.png",
        "./evil.png",
        "evil-dir/secret.png",
        "evil-dir/nested/deep.png",
        "ok/evil.png",
        "ok/up/outside/secret.png",
        "passwd.png",
        "relative.png",
        "loop-a",
        "2026-01-01/secret.png",
        "ok/inside.png",
        "./ok/inside.png",
        "ok//inside.png",
        "ok/./inside.png",
        "inner-link.png",
        "/generated/ok/inside.png",
        REAL_KEY,
        "./" + REAL_KEY,
        REAL_DAY + "//" + OWN_NAME,
        "/generated/" + REAL_KEY,
        "/generated/./" + REAL_KEY,
        storage + "/" + REAL_KEY,
        storage + "/../generated/" + REAL_KEY,
        REAL_DAY + "/../" + REAL_KEY,
        LINK_IN_KEY,
        LINK_OUT_KEY,
        "/generated/" + LINK_OUT_KEY,
        "2026-01-01/" + OWN_NAME,
        "/generated/2026-01-01/" + OWN_NAME,
        str(world.sentinel / OWN_NAME),
        REAL_KEY.upper(),
        REAL_DAY + "/" + OWN_NAME.replace(".png", ".gif"),
        "/generated/evil.png",
        "/generated/evil-dir/secret.png",
        "/generated/2026-01-01/secret.png",
        "/generated/../outside/secret.png",
        "/generated/%2e%2e/outside/secret.png",
        "/generated//" + sentinel.lstrip("/"),
        "/generated/" + sentinel,
        "/generated/./evil.png",
        "/generated\\..\\outside\\secret.png",
        "/generated/ok/inside.png\x00.jpg",
        "ok/inside.png\x00",
        "\x00",
        "/etc/passwd",
        "file:///etc/passwd",
        "file:" + sentinel,
        "http://127.0.0.1:8000/generated/ok/inside.png",
        "C:\\Windows\\win.ini",
        "~/outside/secret.png",
        "~root/.bashrc",
        "data:image/png;base64,not-base64!!",
        "data:text/plain;base64,aGVsbG8=",
        "a" * 5000,
        "ok/" + "b" * 300 + ".png",
        "/".join(["x"] * 2000),
        " ",
        "",
    ]
    pieces = st.sampled_from(
        [
            "..",
            ".",
            "ok",
            "evil-dir",
            "evil.png",
            "inside.png",
            "outside",
            "secret.png",
            REAL_DAY,
            OWN_NAME,
            "2026-01-01",
            "",
            "%2e%2e",
            "\x00",
            "~",
        ]
    )
    joined = st.lists(pieces, min_size=1, max_size=6).map("/".join)
    prefixed = st.tuples(st.sampled_from(["", "/", "/generated/", storage + "/", "./", "\\"]), joined).map(
        "".join
    )
    encoded = st.sampled_from(fixed).map(lambda s: quote(s, safe=""))
    return st.one_of(st.sampled_from(fixed), prefixed, encoded, st.text(max_size=40))


def _send(client: Client, endpoint: str, reference: str) -> Any:
    if endpoint == "upscale":
        return client.post("/api/generate/upscale", json={"imagePath": reference, "scale": 2})
    return client.post(
        "/api/generate/image-to-image", json={"seedImage": reference, "prompt": "a blue lake", "steps": 1}
    )


def test_every_reference_resolves_inside_storage_or_is_refused_and_nothing_outside_is_opened(
    planted: tuple[Client, Planted],
) -> None:
    client, world = planted
    watch = _watch().watching(world.sentinel, *SYSTEM_FILES)

    @given(reference=_tricks(world), endpoint=st.sampled_from(["upscale", "image-to-image"]))
    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(reference: str, endpoint: str) -> None:
        response = _send(client, endpoint, reference)
        body = response.json()
        if world.legitimate(reference):
            assert response.status_code == 200, (reference, response.text)
        else:
            assert response.status_code in (400, 404), (reference, response.text)
            assert body["code"] in ("INVALID_PARAMETERS", "NOT_FOUND"), body
            assert str(world.sentinel) not in response.text
        assert watch.seen == [], (reference, watch.seen)

    try:
        check()
    finally:
        watch.stop()


@pytest.mark.parametrize("endpoint", ["upscale", "image-to-image"])
def test_the_sentinel_is_never_opened_through_a_planted_link_while_the_real_image_works(
    planted: tuple[Client, Planted], endpoint: str
) -> None:
    client, world = planted
    watch = _watch().watching(world.sentinel)
    try:
        for reference in ("evil.png", "/generated/evil.png", "evil-dir/secret.png", "2026-01-01/secret.png"):
            assert_error(_send(client, endpoint, reference), 400, "INVALID_PARAMETERS")
        for reference in (LINK_OUT_KEY, "2026-01-01/" + OWN_NAME, "/generated/2026-01-01/" + OWN_NAME):
            assert_error(_send(client, endpoint, reference), 404, "NOT_FOUND")
        assert _send(client, endpoint, REAL_KEY).status_code == 200
        assert _send(client, endpoint, LINK_IN_KEY).status_code == 200
    finally:
        watch.stop()
    assert watch.seen == []


def test_the_watch_does_see_a_read_of_the_sentinel(tmp_path: Path) -> None:
    """The proof above is only as good as the hook: it must notice a read through a link."""
    world = Planted(tmp_path)
    watch = _watch().watching(world.sentinel)
    try:
        (world.storage / "evil.png").read_bytes()
        Image.open(world.storage / "evil-dir" / "secret.png").close()
    finally:
        watch.stop()
    assert len(watch.seen) == 2


def test_a_generation_whose_file_was_swapped_for_a_link_out_of_storage_is_neither_served_nor_read(
    planted: tuple[Client, Planted],
) -> None:
    client, world = planted
    made = client.post(
        "/api/generate/text-to-image",
        json={"prompt": "a red sunset", "width": 128, "height": 128, "steps": 1},
    ).json()["data"]
    stored = world.storage / made["filePath"].removeprefix("/generated/")
    stored.unlink()
    stored.symlink_to(world.sentinel / "secret.png")
    watch = _watch().watching(world.sentinel)
    try:
        served = client.get(made["filePath"])
        assert_error(served, 404, "NOT_FOUND")
        assert_error(_send(client, "upscale", made["filePath"]), 404, "NOT_FOUND")
        assert_error(_send(client, "image-to-image", made["filePath"]), 404, "NOT_FOUND")
    finally:
        watch.stop()
    assert watch.seen == []


def test_a_home_folder_of_an_unknown_user_is_a_storage_error_not_a_crash(
    planted: tuple[Client, Planted],
) -> None:
    client, _ = planted
    before = client.get("/api/settings").json()
    body = assert_error(
        client.put("/api/settings", json={"storagePath": "~no-such-user-4f2a/images"}), 400, "STORAGE_ERROR"
    )
    assert body["details"]["field"] == "storagePath"
    assert client.get("/api/settings").json() == before
