"""imagestudio: a local-first image studio backend, usable as a library.

```python
from imagestudio import Studio

async with Studio.open("./my-data") as studio:
    generation = await studio.text_to_image("a red sunset over mountains", seed=42)
    print(generation.file_path, await studio.file_of(generation))
```

The same use cases back the HTTP server (``imagestudio serve``) and the CLI.

Importing the package loads nothing: each name below is imported when first asked for (``Studio``
from ``imagestudio.studio``, the values and errors from the domain, ``Config`` from
``imagestudio.config``), and no database or imaging library (SQLAlchemy, Alembic, Pillow, NumPy)
is loaded before :meth:`Studio.open` reaches the composition root (``imagestudio.bootstrap``).
So the ``imagestudio`` command is handling Ctrl-C within milliseconds of starting.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from imagestudio._version import __version__

if TYPE_CHECKING:
    from imagestudio.config import Config, ConfigError
    from imagestudio.domain.errors import (
        DatabaseError,
        InvalidParameters,
        InvalidPrompt,
        NotFound,
        ProviderError,
        ProviderTimeout,
        StorageError,
        StudioError,
    )
    from imagestudio.domain.model import Generation, HistoryPage, Settings, TagCount, TaskEvent, TaskStatus
    from imagestudio.domain.ports import TaskSubscription as Subscription  # noqa: F401 - see __getattr__
    from imagestudio.services import Services  # noqa: F401 - see __getattr__
    from imagestudio.studio import Studio

__all__ = [
    "Config",
    "ConfigError",
    "DatabaseError",
    "Generation",
    "HistoryPage",
    "InvalidParameters",
    "InvalidPrompt",
    "NotFound",
    "ProviderError",
    "ProviderTimeout",
    "Settings",
    "StorageError",
    "Studio",
    "StudioError",
    "TagCount",
    "TaskEvent",
    "TaskStatus",
    "__version__",
]

_WHERE = {
    "Studio": "imagestudio.studio",
    "Config": "imagestudio.config",
    "ConfigError": "imagestudio.config",
    "Services": "imagestudio.services",
    **dict.fromkeys(
        (
            "DatabaseError",
            "InvalidParameters",
            "InvalidPrompt",
            "NotFound",
            "ProviderError",
            "ProviderTimeout",
            "StorageError",
            "StudioError",
        ),
        "imagestudio.domain.errors",
    ),
    **dict.fromkeys(
        ("Generation", "HistoryPage", "Settings", "TagCount", "TaskEvent", "TaskStatus"),
        "imagestudio.domain.model",
    ),
}


def __getattr__(name: str) -> object:
    """The public names (and ``Services``, ``Subscription``), imported when first asked for."""
    if name == "Subscription":
        from imagestudio.domain.ports import TaskSubscription

        return TaskSubscription
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(where), name)
    globals()[name] = value  # asked once, then an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "Services", "Subscription"})
