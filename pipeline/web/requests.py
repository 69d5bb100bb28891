"""Request guards: the bearer token and a body size limit enforced while reading, not after."""

from __future__ import annotations

import hmac
import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from pipeline.web.errors import ApiError, from_pydantic


def require_token(request: Request, token: str | None) -> None:
    """401 unless the request carries `Authorization: Bearer <token>` (when a token is configured)."""
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ApiError(
            401, "UNAUTHORIZED", "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


async def read_json(request: Request, limit: int, empty: Any = None) -> Any:
    """The request body parsed as JSON; 413 past `limit` bytes, 400 when it is not JSON (or empty, unless
    `empty` says what an empty body means)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "PAYLOAD_TOO_LARGE", f"request body exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "PAYLOAD_TOO_LARGE", f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        if empty is not None:
            return empty
        raise ApiError(400, "INVALID_JSON", "request body is empty; a JSON object is required", field="body")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
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
