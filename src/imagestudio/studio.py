"""``Studio``: the use cases of imagestudio as a library, without HTTP (re-exported as
``imagestudio.Studio``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from os import PathLike
from typing import TYPE_CHECKING, Any, Literal

from imagestudio.config import Config
from imagestudio.domain.model import (
    Generation,
    GenerationPatch,
    HistoryCursor,
    HistoryPage,
    HistoryQuery,
    ImageToImage,
    Rerun,
    Settings,
    SettingsPatch,
    TagCount,
    TagQuery,
    Task,
    TaskEvent,
    TextToImage,
    Upscale,
)

if TYPE_CHECKING:
    from imagestudio.domain.ports import StoredStream
    from imagestudio.domain.ports import TaskSubscription as Subscription
    from imagestudio.services import Services

__all__ = ["Studio"]


class Studio:
    """The use cases of imagestudio, without HTTP. Open one with :meth:`Studio.open`."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @classmethod
    @asynccontextmanager
    async def open(
        cls, data_dir: str | PathLike[str] | None = None, *, config: Config | None = None, **overrides: Any
    ) -> AsyncIterator[Studio]:
        """Open a studio on ``data_dir`` (database and images), reading the environment for the rest.

        ``overrides`` are :class:`Config` fields (``engine="local"``, ``database_url=...``).
        """
        from imagestudio.bootstrap import bootstrap

        if config is None:
            config = Config.from_env(data_dir=data_dir, **overrides)
        async with bootstrap(config) as services:
            yield cls(services)

    @property
    def engine(self) -> str:
        return self.services.engine

    async def text_to_image(
        self,
        prompt: str,
        *,
        negative_prompt: str | None = None,
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        cfg_scale: float | None = None,
        seed: int | None = None,
        model: str | None = None,
        task_id: str | None = None,
    ) -> Generation:
        """One image made from ``prompt``."""
        return await self.services.text_to_image(
            TextToImage(
                prompt=prompt,
                negative_prompt=negative_prompt,
                width=width,
                height=height,
                steps=steps,
                cfg_scale=cfg_scale,
                seed=seed,
                model=model,
                task_id=task_id,
            )
        )

    async def text_to_image_batch(
        self,
        prompt: str,
        count: int,
        *,
        negative_prompt: str | None = None,
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        cfg_scale: float | None = None,
        seed: int | None = None,
        model: str | None = None,
        task_id: str | None = None,
    ) -> list[Generation]:
        """A batch of ``count`` images (1 to 8) made from ``prompt`` as one task, in seed order:
        image ``i`` has seed ``seed + i`` (the seed given or drawn), so each can be made again
        alone; stored all or none. On Runware one task with ``numberResults``."""
        return await self.services.text_to_image.batch(
            TextToImage(
                prompt=prompt,
                negative_prompt=negative_prompt,
                width=width,
                height=height,
                steps=steps,
                cfg_scale=cfg_scale,
                seed=seed,
                model=model,
                task_id=task_id,
                count=count,
            )
        )

    async def image_to_image(
        self, source: str, prompt: str, *, strength: float = 0.7, **options: Any
    ) -> Generation:
        """``source``: a generation's ``file_path``, a path inside storage or a ``data:`` URI;
        ``options``: the other :class:`ImageToImage` fields (``seed=``, ``width=``, ...). One image:
        a batch is :meth:`image_to_image_batch`."""
        if options.get("count", 1) != 1:
            raise TypeError(
                "image_to_image makes one image; image_to_image_batch(source, prompt, count) a batch"
            )
        return await self.services.image_to_image(
            ImageToImage(source=source, prompt=prompt, strength=strength, **options)
        )

    async def image_to_image_batch(
        self, source: str, prompt: str, count: int, *, strength: float = 0.7, **options: Any
    ) -> list[Generation]:
        """A batch of ``count`` transformations of ``source`` (1 to 8) as one task, in seed order,
        seeds consecutive as for :meth:`text_to_image_batch`; stored all or none."""
        return await self.services.image_to_image.batch(
            ImageToImage(source=source, prompt=prompt, strength=strength, count=count, **options)
        )

    async def upscale(self, source: str, scale: int = 2, *, task_id: str | None = None) -> Generation:
        return await self.services.upscale(Upscale(source=source, scale=scale, task_id=task_id))

    async def rerun(self, generation_id: int, **overrides: Any) -> list[Generation]:
        """Make a generation again: its operation with its recorded parameters, any of them
        overridden by attribute name (``prompt=``, ``seed="same"``, ``count=4``, ``seed_image=``,
        ``scale=`` ...; only those of its operation). Without ``seed`` a new one is drawn. Returns
        every generation made, in seed order: one, unless ``count`` says more. Each records
        ``rerun_of``; ``history(source_id=...)`` lists what was made from an image."""
        return await self.services.rerun.batch(Rerun(generation_id=generation_id, **overrides))

    async def history(
        self,
        limit: int = 50,
        offset: int = 0,
        type: Literal["image", "video"] | None = None,
        **filters: Any,
    ) -> HistoryPage:
        """A page of the history; ``filters`` are the other :class:`HistoryQuery` fields (``q``,
        ``operation``, ``engine``, ``model``, ``created_from``, ``created_to``, ``favorite``,
        ``tags``, ``source_id``, ``sort``, and ``cursor``, which also takes the text of a page's
        ``next_cursor``)."""
        cursor = filters.get("cursor")
        if isinstance(cursor, str):
            filters["cursor"] = HistoryCursor.decode(cursor) if cursor else None
        query = HistoryQuery(limit=limit, offset=offset, type=type, **filters)
        return await self.services.list_history(query)

    async def get(self, generation_id: int) -> Generation:
        return await self.services.get_generation(generation_id)

    async def delete(self, generation_id: int) -> None:
        await self.services.delete_generation(generation_id)

    async def update(self, generation_id: int, **changes: Any) -> Generation:
        """Change what is kept about a generation, by name: any of ``favorite``, ``tags`` (all of
        them; stored trimmed and case-folded) and ``notes`` (``None`` clears them); all or
        nothing. Returns the generation as it now is."""
        return await self.services.update_generation(generation_id, GenerationPatch(**changes))

    async def tags(self, prefix: str | None = None, limit: int = 100) -> list[TagCount]:
        """The tags in use, each with how many generations carry it, the most used first."""
        return await self.services.list_tags(TagQuery(prefix=prefix, limit=limit))

    async def file_of(self, generation: Generation) -> str | None:
        """The absolute path of a generation's image file, or ``None`` when the storage keeps no
        local files (then read it with :meth:`open_file`)."""
        return await self.services.open_image.local_path(generation.image.key)

    async def open_file(self, generation: Generation) -> StoredStream:
        """A generation's image as a stream (``size``, ``media_type``, ``chunks``); close it with
        ``await stream.chunks.aclose()``."""
        _, stream = await self.services.open_image(generation.image.key)
        return stream

    async def settings(self) -> Settings:
        return await self.services.get_settings()

    async def update_settings(self, **changes: Any) -> Settings:
        """Change settings by attribute name (``default_width=768``); all-or-nothing."""
        return await self.services.update_settings(SettingsPatch(**changes))

    async def cancel_task(self, task_id: str) -> Task:
        """Cancel the task of a generation started with ``task_id=...`` (from another coroutine)
        and return it once it has stopped; the waiting call then raises ``GenerationCancelled``.
        ``Conflict`` if it had already finished, ``NotFound`` if no such task was queued."""
        return await self.services.cancel_task(task_id)

    def subscribe(self, task_id: str | None = None) -> Subscription:
        """Progress events of one task or all tasks (iterate it; ``close()`` when done)."""
        return self.services.events.subscribe(task_id)

    def on_event(self, listener: Callable[[TaskEvent], None]) -> Callable[[], None]:
        """Call ``listener`` for every progress event; returns a function that stops it."""
        return self.services.events.add_listener(listener)
