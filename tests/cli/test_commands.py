"""``imagestudio generate``, ``image-to-image`` and ``upscale`` as real processes: what they store,
what they print, and how they refuse what they cannot use."""

from __future__ import annotations

import io
from pathlib import Path

import anyio
import pytest
from PIL import Image

from imagestudio import Generation, Studio
from imagestudio.testing.fake_runware import FakeRunware
from tests.cli.conftest import run_cli, stored


def history(data: Path) -> list[Generation]:
    async def read() -> list[Generation]:
        async with Studio.open(data, engine="local") as studio:
            return list((await studio.history(limit=50)).items)

    return anyio.run(read)


def picture(path: Path, size: tuple[int, int], kind: str = "PNG") -> Path:
    Image.new("RGB", size, (40, 120, 200)).save(path, kind)
    return path


def test_image_to_image_transforms_a_local_file_and_stores_the_result(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "night.png"
    source = picture(tmp_path / "day.png", (320, 256))
    done = run_cli(
        "image-to-image", str(source), "the same view at night with stars",
        "--strength", "0.6", "--steps", "4", "--seed", "5", "--out", str(out), "--data-dir", str(data),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    (made,) = history(data)
    assert made.operation.value == "image-to-image"
    assert (made.width, made.height) == (320, 256)  # the source's size
    assert made.parameters.strength == 0.6
    assert made.parameters.steps == 4
    assert made.seed == 5
    assert done.stdout.splitlines() == [f"generation {made.id}: 320x256, seed 5, engine local", str(out)]
    with Image.open(out) as written:
        assert written.size == (320, 256)
    assert "completed  100%  step 4/4" in done.stderr


def test_upscale_enlarges_a_local_file_by_the_scale_asked(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "big.jpg"
    source = picture(tmp_path / "small.jpg", (200, 120), "JPEG")
    done = run_cli("upscale", str(source), "--scale", "3", "--out", str(out), "--data-dir", str(data))

    assert done.returncode == 0, done.stderr
    (made,) = history(data)
    assert made.operation.value == "upscale"
    assert (made.width, made.height) == (600, 360)
    assert made.parameters.scale == 3
    assert done.stdout.splitlines()[0] == f"generation {made.id}: 600x360, engine local"
    with Image.open(out) as written:
        assert written.size == (600, 360)
    assert "step" not in done.stderr  # an upscale has no sampler steps to count


def test_the_progress_of_a_pipe_is_plain_lines_at_each_change_of_status(tmp_path: Path) -> None:
    done = run_cli("generate", "a small red boat", "--steps", "7", "--width", "128", "--height", "128",
                   "--data-dir", str(tmp_path / "data"))  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    statuses = [line.split()[0] for line in done.stderr.splitlines()]
    assert statuses == ["queued", "generating", "completed"]
    completed = done.stderr.splitlines()[-1].split("  ")
    assert completed[:3] == ["completed", "100%", "step 7/7"]
    assert completed[3].endswith("s")  # the elapsed time, e.g. 0.1s


def test_an_image_file_that_is_missing_or_a_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    missing = run_cli("upscale", str(tmp_path / "nope.png"), "--data-dir", str(data))
    folder = run_cli("image-to-image", str(tmp_path), "a cat in a hat", "--data-dir", str(data))

    assert (missing.returncode, missing.stderr) == (
        2,
        f"imagestudio upscale: IMAGE {tmp_path / 'nope.png'}: no such file\n",
    )
    assert folder.returncode == 2
    assert folder.stderr == f"imagestudio image-to-image: IMAGE {tmp_path}: is a folder, not an image file\n"
    assert not data.exists()  # refused before anything was opened


def test_a_file_that_is_not_an_image_is_the_studios_refusal_naming_image(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture at all")
    done = run_cli("upscale", str(notes), "--data-dir", str(tmp_path / "data"))

    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"imagestudio: INVALID_PARAMETERS: IMAGE {notes}")
    assert stored(tmp_path / "data").rows == 0


@pytest.mark.parametrize(
    ("flags", "code"),
    [
        (["--steps", "0"], "INVALID_PARAMETERS"),
        (["--width", "100"], "INVALID_PARAMETERS"),
        (["--cfg-scale", "nan"], "INVALID_PARAMETERS"),
        (["--seed", "-3"], "INVALID_PARAMETERS"),
    ],
)
def test_values_the_studio_refuses_are_its_error_on_one_line_and_exit_1(
    tmp_path: Path, flags: list[str], code: str
) -> None:
    done = run_cli("generate", "a quiet lake", *flags, "--data-dir", str(tmp_path / "data"))

    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"imagestudio: {code}: ")
    assert stored(tmp_path / "data").rows == 0


def test_a_strength_outside_0_to_1_is_refused_by_the_studio(tmp_path: Path) -> None:
    source = picture(tmp_path / "a.png", (128, 128))
    done = run_cli(
        "image-to-image", str(source), "a lake", "--strength", "1.5", "--data-dir", str(tmp_path / "d")
    )

    assert done.returncode == 1
    assert done.stderr.startswith("imagestudio: INVALID_PARAMETERS: ")
    assert "strength" in done.stderr


@pytest.mark.parametrize("flags", [["--width", "abc"], ["--steps", "many"], ["--scale", "5"]])
def test_a_malformed_flag_is_argparses_usage_line_and_exit_2(tmp_path: Path, flags: list[str]) -> None:
    command = ["upscale", "x.png"] if flags[0] == "--scale" else ["generate", "a lake"]
    done = run_cli(*command, *flags, "--data-dir", str(tmp_path / "data"))

    assert done.returncode == 2
    assert "error: argument" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_out_path_that_cannot_be_written_is_refused_before_anything_is_generated(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = run_cli(
        "generate", "a lake", "--out", str(tmp_path / "no" / "such" / "x.jpg"), "--data-dir", str(data)
    )
    into_folder = run_cli("generate", "a lake", "--out", str(tmp_path), "--data-dir", str(data))

    assert done.returncode == 2
    missing = tmp_path / "no" / "such"
    assert (
        done.stderr
        == f"imagestudio generate: --out {missing / 'x.jpg'}: the folder {missing} does not exist\n"
    )
    assert into_folder.returncode == 2
    assert "is a folder" in into_folder.stderr
    assert stored(data).rows == 0


def test_out_replaces_an_earlier_file_whole(tmp_path: Path) -> None:
    out = tmp_path / "picture.png"
    out.write_bytes(b"an older picture")
    done = run_cli("generate", "a yellow field", "--steps", "2", "--width", "192", "--height", "128",
                   "--out", str(out), "--data-dir", str(tmp_path / "data"))  # fmt: skip

    assert done.returncode == 0, done.stderr
    with Image.open(io.BytesIO(out.read_bytes())) as written:
        assert written.size == (192, 128)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "picture.png"]  # no temporary left


def test_count_makes_a_batch_and_prints_every_file_written(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "fox.png"
    done = run_cli("generate", "a red fox in snow", "--count", "3", "--seed", "10", "--steps", "2",
                   "--width", "128", "--height", "128", "--out", str(out),
                   "--data-dir", str(data))  # fmt: skip

    assert done.returncode == 0, done.stderr
    made = sorted(history(data), key=lambda g: g.seed or 0)
    assert [g.seed for g in made] == [10, 11, 12]
    assert len({g.task_id for g in made}) == 1  # one task
    copies = [tmp_path / f"fox-{number}.png" for number in (1, 2, 3)]
    assert done.stdout.splitlines() == [
        line
        for generation, copy in zip(made, copies, strict=True)
        for line in (f"generation {generation.id}: 128x128, seed {generation.seed}, engine local", str(copy))
    ]
    for copy in copies:
        with Image.open(copy) as written:
            assert written.size == (128, 128)
    assert not out.exists()
    assert "completed  100%  step 6/6" in done.stderr  # the steps of all three images


def test_image_to_image_takes_a_count_and_prints_each_stored_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    source = picture(tmp_path / "day.png", (128, 128))
    done = run_cli("image-to-image", str(source), "the same view at night", "--count", "2", "--seed", "4",
                   "--steps", "2", "--data-dir", str(data))  # fmt: skip

    assert done.returncode == 0, done.stderr
    made = sorted(history(data), key=lambda g: g.seed or 0)
    assert [(g.operation.value, g.seed) for g in made] == [("image-to-image", 4), ("image-to-image", 5)]
    lines = done.stdout.splitlines()
    assert lines[0::2] == [f"generation {g.id}: 128x128, seed {g.seed}, engine local" for g in made]
    assert [Path(line).is_file() for line in lines[1::2]] == [True, True]
    assert len(set(lines[1::2])) == 2


@pytest.mark.parametrize("count", ["0", "9"])
def test_a_count_outside_1_to_8_is_the_studios_refusal(tmp_path: Path, count: str) -> None:
    done = run_cli("generate", "a quiet lake", "--count", count, "--data-dir", str(tmp_path / "data"))

    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("imagestudio: INVALID_PARAMETERS: ")
    assert "count" in line
    assert stored(tmp_path / "data").rows == 0


def test_a_batch_on_runware_is_one_task_of_number_results_n(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with FakeRunware.running(api_key="cli-batch-key") as fake:
        env = {"RUNWARE_API_KEY": "cli-batch-key", "RUNWARE_API_URL": fake.url}
        done = run_cli(
            "generate", "a lighthouse", "--count", "4", "--seed", "30", "--data-dir", str(data), env=env
        )
        tasks = [task for task in fake.tasks if task.get("taskType") == "imageInference"]

    assert done.returncode == 0, done.stderr
    assert [(task["numberResults"], task["seed"]) for task in tasks] == [(4, 30)]
    assert fake.billed == 1
    lines = done.stdout.splitlines()
    assert [line.split(", ")[1] for line in lines[0::2]] == ["seed 30", "seed 31", "seed 32", "seed 33"]
    assert stored(data).rows == 4
