"""Domain values and entities, under one import path: ``from imagestudio.domain.model import X``.

The values (commands, what engines take and give, generations, settings, progress, task
snapshots) live in
``domain/values.py`` and the history query (filters, sort, cursor, page) in
``domain/history_query.py``; this module re-exports both, so neither of them imports the other
through here and no import path changed when they were split.
"""

from __future__ import annotations

from imagestudio.domain.history_query import (
    MAX_HISTORY_LIMIT,
    MAX_SEARCH_LENGTH,
    MAX_SEARCH_TERMS,
    HistoryCursor,
    HistoryPage,
    HistoryQuery,
    HistorySort,
    cursor_text,
    parse_timestamp,
    search_terms,
)
from imagestudio.domain.values import (
    DEFAULT_MODEL,
    DEFAULT_STRENGTH,
    MAX_INPUT_PIXELS,
    MAX_SEED,
    MAX_SIDE,
    MAX_UPSCALE_SIDE,
    MIN_SIDE,
    SIDE_STEP,
    GeneratedImage,
    Generation,
    IdempotencyRecord,
    ImageSpec,
    ImageToImage,
    InvalidTransition,
    Operation,
    Parameters,
    Settings,
    SettingsPatch,
    SourceImage,
    StoredFile,
    StoredImage,
    Task,
    TaskEvent,
    TaskStatus,
    TextToImage,
    Upscale,
    nearest_valid_side,
    validate_task_id,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_STRENGTH",
    "MAX_HISTORY_LIMIT",
    "MAX_INPUT_PIXELS",
    "MAX_SEARCH_LENGTH",
    "MAX_SEARCH_TERMS",
    "MAX_SEED",
    "MAX_SIDE",
    "MAX_UPSCALE_SIDE",
    "MIN_SIDE",
    "SIDE_STEP",
    "GeneratedImage",
    "Generation",
    "HistoryCursor",
    "HistoryPage",
    "HistoryQuery",
    "HistorySort",
    "IdempotencyRecord",
    "ImageSpec",
    "ImageToImage",
    "InvalidTransition",
    "Operation",
    "Parameters",
    "Settings",
    "SettingsPatch",
    "SourceImage",
    "StoredFile",
    "StoredImage",
    "Task",
    "TaskEvent",
    "TaskStatus",
    "TextToImage",
    "Upscale",
    "cursor_text",
    "nearest_valid_side",
    "parse_timestamp",
    "search_terms",
    "validate_task_id",
]
