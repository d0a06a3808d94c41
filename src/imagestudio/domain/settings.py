"""Use cases over the user's settings."""

from __future__ import annotations

from dataclasses import dataclass

from imagestudio.domain.model import Settings, SettingsPatch
from imagestudio.domain.ports import ImageStorage, SettingsRepository

__all__ = ["GetSettings", "UpdateSettings"]


@dataclass(frozen=True, kw_only=True)
class GetSettings:
    """Every setting, defaults filled in."""

    repository: SettingsRepository

    async def __call__(self) -> Settings:
        return await self.repository.get()


@dataclass(frozen=True, kw_only=True)
class UpdateSettings:
    """Apply a partial update.

    Rules:
    - every value is validated before anything is written (the patch validates itself);
    - a new storage folder must lie inside the storage roots (symbolic links followed), else
      ``InvalidParameters`` on ``storagePath``, and nothing is created;
    - it must be creatable and writable, with room on its disk, else ``InvalidStoragePath``;
    - the update is all-or-nothing and the answer is the whole merged settings.
    """

    repository: SettingsRepository
    storage: ImageStorage

    async def __call__(self, patch: SettingsPatch) -> Settings:
        if patch.storage_path is not None:
            await self.storage.ensure_writable(patch.storage_path)
        return await self.repository.update(patch)
