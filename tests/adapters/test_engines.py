"""Today's engines' own rules (AIR model ids; CPU count or 64 at once) and the composition
root's table of engines."""

from __future__ import annotations

import os
from typing import get_args

import httpx
import pytest

from imagestudio.adapters.local_engine import LocalImageGenerator
from imagestudio.adapters.runware import RunwareImageGenerator
from imagestudio.bootstrap import ENGINES
from imagestudio.config import Engine
from tests.fakes import FakeImageInspector, fake_services

pytestmark = pytest.mark.anyio


async def test_todays_engines_take_air_ids_only() -> None:
    async with httpx.AsyncClient() as client:
        runware = RunwareImageGenerator(client, api_key="k", inspector=FakeImageInspector())
        for engine in (LocalImageGenerator(), runware):
            assert engine.accepts_model_id("runware:100@1")
            assert engine.accepts_model_id("civitai:4384@128713")
            for model in ("runware", "x:y", "runware:100", "a b:c@1"):
                assert not engine.accepts_model_id(model)


async def test_each_engine_says_its_own_concurrency() -> None:
    async with httpx.AsyncClient() as client:
        runware = RunwareImageGenerator(client, api_key="k", inspector=FakeImageInspector())
        assert runware.default_concurrency == 64
        assert fake_services(generator=runware).tasks.max_running == 64
    assert LocalImageGenerator().default_concurrency == (os.cpu_count() or 1)
    assert LocalImageGenerator(max_workers=3).default_concurrency == 3
    assert fake_services(generator=LocalImageGenerator()).tasks.max_running == (os.cpu_count() or 1)


def test_the_engine_table_has_every_engine_the_config_accepts() -> None:
    assert sorted(ENGINES) == sorted(get_args(Engine))
