"""Request guards: the bearer token, the content type, and a body read with its size limit enforced while
reading (not after), strictly as UTF-8 and with a bounded nesting depth."""

from __future__ import annotations

import hmac
import json
import re
from array import array
from itertools import accumulate
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from pipeline.api.errors import ApiError, from_pydantic


def require_token(request: Request, token: str | None) -> None:
    """401 unless the request carries `Authorization: Bearer <token>` (when a token is configured)."""
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ApiError(
            401, "UNAUTHORIZED", "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


# Deepest nesting of arrays and objects a body may have. Every request body of the API is at most 4 or 5 levels
# deep; far deeper input exhausts the parser's (and pydantic's) recursion and would answer 500.
MAX_JSON_DEPTH = 64

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the arrays and objects of a JSON text nest deeper than `limit`, found without parsing it:
    strings are removed, then the running count of opening minus closing brackets is bounded."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", body))
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    return max(accumulate(array("b", brackets.translate(_STEPS)))) > limit


def require_json_content_type(request: Request) -> None:
    """415 unless the request says its body is JSON: `application/json` (or `application/<x>+json`), in UTF-8
    when a charset is given. A request without a Content-Type header is read as JSON."""
    header = request.headers.get("content-type", "").strip()
    if not header:
        return
    media_type, *params = (part.strip().lower() for part in header.split(";"))
    charset = next((p.partition("=")[2].strip('"') for p in params if p.startswith("charset=")), "utf-8")
    is_json = media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )
    if not is_json or charset not in ("utf-8", "utf8"):
        raise ApiError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"Content-Type must be application/json (UTF-8), got {header[:100]!r}",
            field="content-type",
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; 413 past `limit` bytes (declared or sent)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "PAYLOAD_TOO_LARGE", f"request body exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "PAYLOAD_TOO_LARGE", f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int, empty: Any = None) -> Any:
    """The request body parsed as JSON; 413 past `limit` bytes, 400 when it is not JSON in UTF-8, nests deeper
    than `MAX_JSON_DEPTH`, or is empty (unless `empty` says what an empty body means)."""
    return parse_json(await read_body(request, limit), empty)


def parse_json(body: bytes, empty: Any = None) -> Any:
    """`read_json` of a body already read."""
    if not body.strip():
        if empty is not None:
            return empty
        raise ApiError(400, "INVALID_JSON", "request body is empty; a JSON object is required", field="body")
    if json_depth_exceeds(body):
        raise ApiError(
            400, "INVALID_JSON", f"request body nests arrays or objects deeper than {MAX_JSON_DEPTH} levels",
            field="body",
        )
    try:
        return json.loads(body.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, "INVALID_JSON", f"request body is not valid JSON: {exc}", field="body") from None


M = TypeVar("M", bound=BaseModel)


async def read_model(request: Request, model: type[M], limit: int, empty_ok: bool = False,
                     ) -> tuple[M, dict[str, Any]]:
    """The JSON object body validated as `model` (and the raw object); 400 naming the field otherwise. With
    `empty_ok` an empty body means `{}`."""
    body = await read_json(request, limit, {} if empty_ok else None)
    if not isinstance(body, dict):
        raise ApiError(400, "VALIDATION_FAILED", "body must be a JSON object", field="body")
    try:
        return model.model_validate(body), body
    except ValidationError as exc:
        raise from_pydantic(exc, status=400) from None
