"""``imagestudio generate``, ``image-to-image`` and ``upscale``: one image (or, with ``--count N``, a
batch of N) in-process, with a progress bar, and Ctrl-C that cancels for real.

Rules:
- the task runs under an id the command chooses, so a Ctrl-C can cancel it through the studio's
  cancel use case (``Studio.cancel_task``), the way ``DELETE /api/tasks/{id}`` does: a local
  engine stops at its next step, a provider call is abandoned and its result discarded; nothing
  is stored (no history row, no image file), ``cancelled`` is said on its own line, exit 130;
- a Ctrl-C while the studio opens (imports, migrations) or the task is being prepared abandons
  the start-up; during the copy to ``--out`` it leaves no partial file; a second Ctrl-C exits at
  once (``cli/interrupts.py``);
- IMAGE is a file on this machine named on the command line: the command reads it (at most the
  request body limit) and hands it to the studio as a ``data:`` URI, the only form of outside
  image the use cases take;
- ``--out`` is checked before anything is generated: on Runware a bad path would otherwise cost
  an image. A batch writes one file per image, ``--out NAME.EXT`` as ``NAME-1.EXT``,
  ``NAME-2.EXT``, ... in seed order;
- every image made is printed: its id, size, seed and engine, then the file it is in.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import mimetypes
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from imagestudio.cli.interrupts import EXIT_INTERRUPTED, Interrupts
from imagestudio.cli.progress import ProgressBar
from imagestudio.cli.shared import UsageError, check_data_dir, load_config, say, soon
from imagestudio.config import Config
from imagestudio.domain.errors import Conflict, NotFound, StudioError, error_from_code
from imagestudio.domain.model import DEFAULT_STRENGTH, Generation, TaskStatus

if TYPE_CHECKING:
    from imagestudio import Studio

__all__ = ["generate", "image_to_image", "upscale"]

Start = Callable[["Studio", str], Awaitable[list[Generation]]]


@dataclass(frozen=True, kw_only=True)
class _Work:
    """What one generating command asks of the studio: ``start(studio, task_id)`` makes the images."""

    start: Start
    count: int = 1
    """How many images (a batch)."""
    steps: int | None = None
    """The steps asked for (``None``: the settings' default)."""
    samples: bool = True
    """Whether the engine works in sampler steps (an upscale does not)."""
    image: str | None = None
    """The IMAGE argument, which the API's messages call ``seedImage`` or ``imagePath``."""


def generate(args: argparse.Namespace, interrupts: Interrupts) -> int:
    def plan(config: Config) -> _Work:
        def start(studio: Studio, task_id: str) -> Awaitable[list[Generation]]:
            return studio.text_to_image_batch(args.prompt, args.count, task_id=task_id, **_diffusion(args))

        return _Work(start=start, count=args.count, steps=args.steps)

    return _run(args, interrupts, plan)


def image_to_image(args: argparse.Namespace, interrupts: Interrupts) -> int:
    def plan(config: Config) -> _Work:
        source = read_image(args.image, config.max_body_size)
        strength = DEFAULT_STRENGTH if args.strength is None else args.strength

        def start(studio: Studio, task_id: str) -> Awaitable[list[Generation]]:
            return studio.image_to_image_batch(
                source, args.prompt, args.count, strength=strength, task_id=task_id, **_diffusion(args)
            )

        return _Work(start=start, count=args.count, steps=args.steps, image=args.image)

    return _run(args, interrupts, plan)


def upscale(args: argparse.Namespace, interrupts: Interrupts) -> int:
    def plan(config: Config) -> _Work:
        source = read_image(args.image, config.max_body_size)

        async def start(studio: Studio, task_id: str) -> list[Generation]:
            return [await studio.upscale(source, args.scale, task_id=task_id)]

        return _Work(start=start, samples=False, image=args.image)

    return _run(args, interrupts, plan)


def _diffusion(args: argparse.Namespace) -> dict[str, Any]:
    names = ("negative_prompt", "width", "height", "steps", "cfg_scale", "seed", "model")
    return {name: getattr(args, name) for name in names}


def _for_the_command_line(error: StudioError, work: _Work) -> str:
    """The error's message, naming IMAGE where the API's name for the input image stands."""
    field = error.details.get("field")
    if work.image is not None and field in ("seedImage", "imagePath") and field in error.message:
        return error.message.replace(field, f"IMAGE {work.image}", 1)
    return error.message


def read_image(name: str, limit: int) -> str:
    """The file ``name`` as a ``data:`` URI; ``UsageError`` if it cannot be read or holds more than
    ``limit`` bytes. Whether it is an image is the studio's to say."""
    path = Path(name).expanduser()
    try:
        if path.is_dir():
            raise UsageError(f"IMAGE {name}: is a folder, not an image file")
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError as error:
        raise UsageError(f"IMAGE {name}: no such file") from error
    except OSError as error:
        raise UsageError(f"IMAGE {name}: cannot read it: {error.strerror or error}") from error
    if len(data) > limit:
        raise UsageError(f"IMAGE {name}: larger than {limit // 2**20} MiB, the most an input image may be")
    media = mimetypes.guess_type(path.name)[0]
    if media is None or not media.startswith("image/"):
        media = "image/x-unknown"  # the studio reads the format from the bytes, not from this label
    return f"data:{media};base64,{base64.b64encode(data).decode('ascii')}"


def check_out(out: str | None) -> Path | None:
    """Where ``--out`` writes, checked before anything is generated (``UsageError`` if it cannot)."""
    if out is None:
        return None
    path = Path(out).expanduser().resolve()
    if path.is_dir():
        raise UsageError(f"--out {out}: is a folder; name the image file to write")
    if not path.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise UsageError(f"--out {out}: cannot write in {path.parent}")
    return path


def out_paths(out: Path | None, count: int) -> list[Path | None]:
    """The file ``--out`` names for each image: ``out`` itself for one, ``NAME-1.EXT``,
    ``NAME-2.EXT``, ... beside it for a batch (none without ``--out``)."""
    if out is None or count == 1:
        return [out] * count
    return [out.with_name(f"{out.stem}-{number}{out.suffix}") for number in range(1, count + 1)]


def _run(args: argparse.Namespace, interrupts: Interrupts, plan: Callable[[Config], _Work]) -> int:
    from imagestudio.log import configure_logging

    config = load_config(args)
    configure_logging(fmt=config.log_format, level="warning", secrets=config.secrets)
    work = plan(config)
    out = check_out(args.out)
    check_data_dir(config, args, create=True)
    # The composition root's libraries load here, where a Ctrl-C simply unwinds, rather than
    # inside the event loop, where it would wait for the import to end.
    import imagestudio.bootstrap  # noqa: F401

    return anyio.run(_make, config, work, out, interrupts)


async def _make(config: Config, work: _Work, out: Path | None, interrupts: Interrupts) -> int:
    from imagestudio import Studio

    bar = ProgressBar(sys.stderr)
    interrupts.line_open = lambda: bar.line_open
    with anyio.CancelScope() as starting, interrupts.calling(soon(starting.cancel)):
        async with Studio.open(config=config) as studio:
            task_id = f"cli-{uuid.uuid4().hex}"
            bar.start(task_id, await _steps(studio, work))
            try:
                generations = await _attempt(studio, work, task_id, bar, interrupts)
            except StudioError as error:
                say(f"imagestudio: {error.code}: {_for_the_command_line(error, work)}")
                return 1
            if generations is None:
                say("cancelled")
                return EXIT_INTERRUPTED
            return await report(studio, generations, out, interrupts)
    say("cancelled")  # while the studio opened: nothing was asked of it yet
    return EXIT_INTERRUPTED


async def _steps(studio: Studio, work: _Work) -> int | None:
    """How many steps the progress counts: the local engine reports each sampler step (of every
    image of a batch, one after the other); a provider reports a percentage, and an upscale has
    no steps."""
    if not work.samples or studio.engine != "local":
        return None
    steps = work.steps if work.steps is not None else (await studio.settings()).default_steps
    return steps * work.count


async def _attempt(
    studio: Studio, work: _Work, task_id: str, bar: ProgressBar, interrupts: Interrupts
) -> list[Generation] | None:
    """The generations, or ``None`` when a Ctrl-C cancelled the task (then nothing is stored)."""
    stop_listening = studio.on_event(bar)
    try:
        with _ticking(bar), anyio.CancelScope() as waiting, interrupts.calling(soon(waiting.cancel)):
            return await work.start(studio, task_id)
        return await _cancel(studio, task_id)
    finally:
        stop_listening()
        bar.close()


async def _cancel(studio: Studio, task_id: str) -> list[Generation] | None:
    """Stop the task after a Ctrl-C and wait until it has stopped (shielded: a second Ctrl-C ends the
    process instead). ``None`` once it is cancelled or was never queued; its generations if they
    had been made and stored before it could be stopped."""
    with anyio.CancelScope(shield=True):
        try:
            await studio.cancel_task(task_id)
            return None
        except NotFound:
            return None  # the Ctrl-C came while the request was being prepared
        except Conflict:
            task = (await studio.services.get_task(task_id)).task
            made = [g for g in [await _kept(studio, i) for i in task.generation_ids] if g is not None]
    if task.status is TaskStatus.COMPLETED and made:
        say("imagestudio: too late to cancel: the image had been made and stored")
        return made
    if task.status is TaskStatus.FAILED:
        raise error_from_code(task.error_code or "INTERNAL_ERROR", task.error_message or "Generation failed")
    return None


async def _kept(studio: Studio, generation_id: int) -> Generation | None:
    """The generation, or ``None`` once it has been deleted."""
    try:
        return await studio.get(generation_id)
    except NotFound:
        return None


@contextmanager
def _ticking(bar: ProgressBar, every: float = 0.5) -> Iterator[None]:
    """Redraw the bar's clock every ``every`` seconds while inside (on a terminal only)."""
    loop = asyncio.get_running_loop()
    handle: asyncio.TimerHandle | None = None

    def tick() -> None:
        nonlocal handle
        bar.tick()
        handle = loop.call_later(every, tick)

    if bar.terminal:
        handle = loop.call_later(every, tick)
    try:
        yield
    finally:
        if handle is not None:
            handle.cancel()


async def report(
    studio: Studio, generations: Sequence[Generation], out: Path | None, interrupts: Interrupts
) -> int:
    """Copy each image to its ``--out`` file (if asked, :func:`out_paths`) and print what was made
    and where it is: per image, ``generation ID: WxH, seed S, engine E`` and the file."""
    with anyio.CancelScope() as copying, interrupts.calling(soon(copying.cancel)):
        for generation, target in zip(generations, out_paths(out, len(generations)), strict=True):
            try:
                path = await _deliver(studio, generation, target)
            except OSError as error:
                say(f"imagestudio: --out {target}: cannot write it: {error.strerror or error}")
                say(f"imagestudio: {_in_history(generations)}: {generation.file_path}")
                return 1
            facts = [f"{generation.width}x{generation.height}"]
            if generation.seed is not None:
                facts.append(f"seed {generation.seed}")
            facts.append(f"engine {studio.engine}")
            print(f"generation {generation.id}: {', '.join(facts)}\n{path}", flush=True)
        return 0
    say("cancelled")
    say(f"imagestudio: --out was not written; {_in_history(generations)}")
    return EXIT_INTERRUPTED


def _in_history(generations: Sequence[Generation]) -> str:
    if len(generations) == 1:
        return f"generation {generations[0].id} is in the history"
    return f"generations {', '.join(str(g.id) for g in generations)} are in the history"


async def _deliver(studio: Studio, generation: Generation, out: Path | None) -> str:
    """Where the image is: its stored file, or ``out`` once it is copied there (through a temporary
    file beside it, so an interrupted copy leaves no partial image and an earlier file intact)."""
    if out is None:
        return await studio.file_of(generation) or generation.file_path
    partial = anyio.Path(out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.part"))
    stream = await studio.open_file(generation)
    try:
        async with await anyio.open_file(partial, "wb") as sink:
            async for chunk in stream.chunks:
                await sink.write(chunk)
        await partial.replace(out)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await partial.unlink(missing_ok=True)
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await stream.chunks.aclose()
    return str(out)
