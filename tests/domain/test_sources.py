"""Which strings name an input image (``SourceResolver``), against fakes.

A path names only an image the server made: a generation's ``filePath`` or key, or a file of the
storage's own naming scheme in the current storage folder. Every other path gets one and the same
answer, whether or not a file is there, so the answer tells a caller nothing about the disk.
"""

from __future__ import annotations

import pytest

from imagestudio.domain.errors import InvalidParameters, NotFound
from imagestudio.domain.model import SettingsPatch, StoredImage, TextToImage
from tests.domain.world import World
from tests.fakes import tiny_png

pytestmark = pytest.mark.anyio


FOLDER = "/home/someone/studio/generated"


async def _world() -> World:
    world = World()
    await world.settings.update(SettingsPatch(storage_path=FOLDER))
    return world


async def _refusal(world: World, reference: str) -> tuple[str, str, str]:
    with pytest.raises(InvalidParameters) as caught:
        await world.resolver(reference, "imagePath")
    return caught.value.code, caught.value.message, repr(sorted(caught.value.details.items()))


async def test_a_path_of_another_form_gets_the_same_answer_whether_or_not_a_file_is_there() -> None:
    world = await _world()
    root = (await world.settings.get()).storage_path
    world.storage.files[(root, "Pictures/private.png")] = tiny_png(64, 64)
    world.storage.files[(root, "not-an-image.txt")] = b"hello"
    answers = {
        await _refusal(world, reference)
        for reference in (
            "Pictures/private.png",
            "Pictures/missing.png",
            "not-an-image.txt",
            "../../etc/passwd",
            "/etc/passwd",
            "file:///etc/passwd",
            "http://127.0.0.1/x.png",
            "~/Pictures/private.png",
            "/generated/Pictures/private.png",
            "",
        )
    }
    assert len(answers) == 1
    [(code, message, details)] = answers
    assert code == "INVALID_PARAMETERS"
    assert details == repr([("field", "imagePath")])
    assert "/generated/" in message


async def test_a_generation_is_named_by_its_file_path_its_key_or_its_absolute_file() -> None:
    world = await _world()
    made = await world.text_to_image()(TextToImage(prompt="a lighthouse", width=128, height=128))
    await world.settings.update(SettingsPatch(storage_path="/new/folder"))  # it stays where it was
    for reference in (
        made.file_path,
        made.image.key,
        "./" + made.image.key,
        made.image.root + "/" + made.image.key,
    ):
        source = await world.resolver(reference, "imagePath")
        assert source.generation is not None, reference
        assert source.generation.id == made.id
    assert await _refusal(world, "/elsewhere/" + made.image.key) == await _refusal(world, "x.png")


async def test_an_image_of_our_naming_scheme_in_storage_is_read_and_a_missing_one_is_not_found() -> None:
    world = await _world()
    root = (await world.settings.get()).storage_path
    key = world.storage.own_key()
    world.storage.plant(StoredImage(key=key, root=root), tiny_png(64, 32))
    for reference in (key, "/generated/" + key, root + "/" + key):
        source = await world.resolver(reference, "imagePath")
        assert (source.width, source.height, source.generation) == (64, 32, None)
    with pytest.raises(NotFound):
        await world.resolver(world.storage.own_key(), "imagePath")


async def test_an_input_file_larger_than_the_read_limit_is_refused_with_its_field() -> None:
    world = World()
    world.storage.max_read_bytes = 100
    root = (await world.settings.get()).storage_path
    key = world.storage.own_key()
    world.storage.plant(StoredImage(key=key, root=root), tiny_png(64, 64) + b"\0" * 200)
    with pytest.raises(InvalidParameters) as caught:
        await world.resolver(key, "seedImage")
    assert caught.value.details == {"field": "seedImage"}
    assert "large" in caught.value.message
