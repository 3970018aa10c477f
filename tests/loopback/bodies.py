"""Reading request bodies the two ways discord.py sends them.

JSON (`Content-Type: application/json`), or multipart/form-data with a `payload_json`
field and one `files[n]` part per file (discord.py builds the form with
`quote_fields=False`, so the brackets arrive literally).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from .state import UploadedFile


@dataclass
class Body:
    json: Any = None
    files: list[UploadedFile] = field(default_factory=list)

    @property
    def payload(self) -> dict[str, Any]:
        return self.json if isinstance(self.json, dict) else {}


BODY_KEY: Any = web.RequestKey("body", Body) if hasattr(web, "RequestKey") else "body"
"""Where the server middleware leaves the parsed body for the handlers."""


async def read_body(request: web.Request) -> Body:
    if not request.can_read_body:
        return Body()
    if request.content_type.startswith("multipart/"):
        return await _read_multipart(request)
    raw = await request.read()
    if not raw:
        return Body()
    try:
        return Body(json=json.loads(raw))
    except ValueError:
        return Body(json=raw.decode(errors="replace"))


async def _read_multipart(request: web.Request) -> Body:
    body = Body()
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue
        data = bytes(await part.read(decode=False))
        name = part.name or ""
        if name == "payload_json":
            body.json = json.loads(data)
        elif part.filename is not None:
            content_type = part.headers.get("Content-Type")
            body.files.append(
                UploadedFile(
                    field=name, filename=part.filename, data=data, content_type=content_type
                )
            )
    return body
