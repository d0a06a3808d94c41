"""The use case that reads how an image was made from its file: ``POST /api/images/inspect``.

Writing the record is part of every generation (``pipeline.run_generation`` with the setting
``embedMetadata``); what it writes and which records it can read are the ``ImageAnnotator``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagestudio.domain.generate import _data_uri_bytes
from imagestudio.domain.model import FoundMetadata
from imagestudio.domain.pipeline import SourceResolver
from imagestudio.domain.ports import ImageAnnotator
from imagestudio.domain.rules import _check_source
from imagestudio.domain.tasks import TaskScheduler

__all__ = ["INSPECT_FIELD", "InspectImage"]

INSPECT_FIELD = "image"
"""The request field that names the image (and that a refusal names in ``details.field``)."""


@dataclass(frozen=True, kw_only=True)
class InspectImage:
    """Read the generation parameters an image file carries.

    Rules:
    - `image` names the image as an input image is named: a `data:image/...;base64,` URI or one of
      this server's own images (a generation's `filePath`, or a file of its naming scheme in the
      storage folder); every other path is 400 `INVALID_PARAMETERS`, a missing image of our
      naming scheme 404;
    - the limits of input images apply: the file's size (checked before it is read), at most
      64,000,000 pixels, and it must decode as an image (else 400); its bytes are held against
      the byte budget of queued work while it is read (past it 503 `QUEUE_FULL`);
    - each record found is answered with its `source` (`imagestudio`, `automatic1111`,
      `comfyui`, `invokeai`), its values under the API's parameter names where they map, and its
      text as stored (`raw`); ours comes first;
    - an image that carries none answers an empty list.
    """

    resolve: SourceResolver
    annotator: ImageAnnotator
    tasks: TaskScheduler

    async def __call__(self, reference: str) -> list[FoundMetadata]:
        reference = _check_source(INSPECT_FIELD, reference)
        hold = self.tasks.hold(_data_uri_bytes(reference))
        try:
            source = await self.resolve(reference, INSPECT_FIELD)
            hold.resize(len(source.data))
            return await self.annotator.read(source.data)
        finally:
            hold.release()
