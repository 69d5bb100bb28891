"""The API contract: what each route declares in `/openapi.json` and `docs/openapi.json`.

The routes read their bodies and queries themselves (`pipeline.api.requests`: the body limit while streaming,
JSON depth, content type, and one error shape), so FastAPI cannot infer what they take and give. `op()` says it
instead, from the same pydantic models the routes validate with: the request body, the query parameters, the
success response and the error responses each route really answers, and whether the bearer token applies.
`install()` puts every model the routes name into `components.schemas`, the error model and the bearer scheme,
and removes FastAPI's default 422 `HTTPValidationError`, which this API never answers (its validation errors
are `Error` bodies, see `pipeline.api.errors`). Schemathesis checks the live gateway against the result."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from pipeline.domain.names import DNS_LABEL, DNS_LABEL_MAX, DNS_SUBDOMAIN, DNS_SUBDOMAIN_MAX

REF = "#/components/schemas/{model}"


class Body(BaseModel):
    """A response body: the fields listed are always there (or say when not); more may follow."""

    model_config = ConfigDict(extra="allow")


class FieldError(BaseModel):
    """One thing wrong with a request, or with a dependency's answer, and where."""

    field: str = Field(description="`alerts[0].startsAt`, `namespace`, `body`, or a dependency (`prometheus`)")
    message: str


class Error(BaseModel):
    """Every error answer: `error` is the message clients show, `code` the stable machine-readable reason, `field`
    the request field at fault (a query parameter, a path parameter, a body path, or `body`)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"status": "error", "error": "validation failed: severity: Input should be 'critical', 'high', "
         "'medium', 'low' or 'info'", "code": "VALIDATION_FAILED", "field": "severity",
         "details": [{"field": "severity", "message": "Input should be 'critical', 'high', 'medium', 'low' or "
                      "'info'"}]},
    ]})
    status: Literal["error"]
    error: str
    code: str = Field(examples=["VALIDATION_FAILED", "INVALID_QUERY", "NOT_FOUND", "UNAUTHORIZED",
                                "PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE", "BROKER_UNAVAILABLE"])
    field: str | None = Field(None, description="absent when no single field is at fault")
    details: list[FieldError] | None = Field(None, description="every field at fault (at most 50)")


ERRORS: dict[int, str] = {
    400: "The query, a path parameter or the body is invalid; `field` names it",
    401: "The bearer token is missing or wrong (only when `API_TOKEN` is set)",
    403: "A dependency refused the gateway's own credentials (e.g. its Kubernetes RBAC); the message says which "
         "permission is missing",
    404: "Nothing with this id, or the named model does not exist",
    409: "The object is not in a state this request can change",
    413: "The body is larger than the route's limit, or a record larger than the broker accepts",
    415: "The body is not JSON (`Content-Type` other than `application/json` or `application/*+json`)",
    422: "The request is well formed but cannot be carried out as asked",
    500: "An unexpected failure (`INTERNAL`)",
    502: "A dependency refused the request the gateway built, or answered nonsense; retrying cannot help",
    503: "A dependency (the broker, Prometheus, a model, the read model) is not available; see `Retry-After`",
    504: "The broker took the event but it did not become visible in time; it will",
}

# What reading a body can answer (pipeline.api.requests.read_json): invalid JSON or field, too large, not JSON.
BODY_ERRORS = (400, 413, 415)
# The engine's compute routes (/detect, /predict, /anomalies/analyze) check the content type themselves: a 400.
ENGINE_BODY_ERRORS = {
    400: "The body is invalid (`field` names what), or not JSON: a `Content-Type` other than `application/json` "
         "is the engine's 400, not 415",
    413: ERRORS[413],
}
# Publishing to the broker and waiting to see it (gateway.projection.publish_visible): 503, or 504 when stored but
# not visible in time.
PUBLISH_ERRORS = (503, 504)

_models: dict[str, type[BaseModel]] = {}
_examples: dict[str, list[Any]] = {}  # of the response models, by name


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def maybe_absent(description: str, **constraints: Any) -> Any:
    """A response field that is left out, never null, when there is nothing to say: not required, and no
    `default: null` in the schema (which would say it can be null)."""
    return Field(None, description=description, json_schema_extra=_no_default, **constraints)


def fullmatch(regex: str, max_length: int, *, empty: bool = False) -> dict[str, Any]:
    """The JSON Schema of a string a route checks with `re.fullmatch(regex)` and a length limit; `empty`: the
    empty string too (the route reads it as absent). For `json_schema_extra` of a field or a path parameter:
    the route's own check answers, so the model does not validate it again."""
    return {"pattern": f"^(?:{regex}){'?' if empty else ''}$", "maxLength": max_length}


def dns_label(*, empty: bool = False) -> dict[str, Any]:
    """A namespace (RFC 1123 label), as `pipeline.domain.names.is_dns_label` checks it."""
    return fullmatch(DNS_LABEL, DNS_LABEL_MAX, empty=empty)


def dns_subdomain(*, empty: bool = False) -> dict[str, Any]:
    """A pod, deployment or node name (RFC 1123 subdomain), as `is_dns_subdomain` checks it."""
    return fullmatch(DNS_SUBDOMAIN, DNS_SUBDOMAIN_MAX, empty=empty)


def _register(model: type[BaseModel]) -> dict[str, str]:
    _models[model.__name__] = model
    return {"$ref": REF.format(model=model.__name__)}


def _response(model: type[BaseModel], description: str) -> dict[str, Any]:
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    if isinstance(examples, list):
        _examples[model.__name__] = examples
    return {"model": model, "description": description}


def _parameters(query: type[BaseModel]) -> list[dict[str, Any]]:
    """The query parameters of a model whose fields are scalars, enums and literals."""
    schema = query.model_json_schema(ref_template=REF)
    if "$defs" in schema:  # a parameter's schema must stand alone: no nested models or enums by reference
        raise TypeError(f"{query.__name__}: query parameters must be plain values, not models or enum classes")
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema["properties"].items():
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        if "description" in prop:
            param["description"] = prop.pop("description")
        prop.pop("title", None)
        if "anyOf" in prop:  # `X | None`: a query value is absent, never null
            branches = [b for b in prop["anyOf"] if b.get("type") != "null"]
            prop.pop("anyOf")
            prop.update(branches[0] if len(branches) == 1 else {"anyOf": branches})
        param["schema"] = prop
        out.append(param)
    return out


def op(
    ok: type[BaseModel] | None = None,
    *,
    status: int = 200,
    body: type[BaseModel] | tuple[type[BaseModel], ...] | None = None,
    body_required: bool = True,
    body_errors: Iterable[int] | Mapping[int, str] = BODY_ERRORS,
    query: type[BaseModel] | None = None,
    errors: Iterable[int] | Mapping[int, str] = (),
    token: bool = False,
    description: str | None = None,
    ok_description: str | None = None,
    extra: dict[int, type[BaseModel]] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `api.get/post/...(path, **op(...))`: the route's contract, declared.

    `ok` is the success body at `status`; `body` the request body's model (validated by the route itself with
    `read_model`; several: any of them); `body_errors` what reading it can answer (`ENGINE_BODY_ERRORS` for the routes that check the
    content type themselves); `query` a model of the query parameters; `errors` the statuses the route answers
    with an `Error` besides `body_errors` and 401 with `token`. Either may map the statuses to what they mean on
    this route (else `ERRORS` says it). `extra` other non-error answers (e.g. 202 and 409 bodies that are not
    errors)."""
    meanings = {code: text for given in (body_errors, errors) if isinstance(given, Mapping)
                for code, text in given.items()}
    codes = set(errors) | (set(body_errors) if body is not None else set()) | ({401} if token else set())
    responses: dict[int | str, dict[str, Any]] = {
        code: {"model": Error, "description": meanings.get(code, ERRORS[code])} for code in sorted(codes)
    }
    for code, model in (extra or {}).items():
        responses[code] = _response(model, model.__doc__.split("\n")[0] if model.__doc__ else "")
    if ok is not None:
        responses[status] = _response(ok, ok_description or (ok.__doc__ or "").split("\n")[0])
    openapi_extra: dict[str, Any] = {}
    if body is not None:
        openapi_extra["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": (
                _register(body) if not isinstance(body, tuple) else {"anyOf": [_register(m) for m in body]})}},
        }
    if query is not None:
        openapi_extra["parameters"] = _parameters(query)
    if token:
        # The bearer token is checked when API_TOKEN is set; without it the route is open (the empty requirement).
        openapi_extra["security"] = [{"bearer": []}, {}]
    kwargs: dict[str, Any] = {"status_code": status, "responses": responses}
    if openapi_extra:
        kwargs["openapi_extra"] = openapi_extra
    if description is not None:
        kwargs["description"] = description
    return kwargs


def install(app: FastAPI) -> None:
    """`app.openapi()` with the registered request models, the error model and the bearer scheme, and without
    FastAPI's validation-error schemas (never answered here)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = doc.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for path_item in doc.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.get("responses", {})
                if "422" in responses and "HTTPValidationError" in str(responses["422"]):
                    del responses["422"]
        if _models:
            _, defs = models_json_schema([(m, "validation") for m in _models.values()], ref_template=REF)
            schemas.update(defs.get("$defs", {}))
        # FastAPI leaves every null out of the document (`exclude_none`), the response examples' too: `"score":
        # null` would vanish and the example break its own schema. They are put back as the models have them.
        for name, examples in _examples.items():
            if name in schemas:
                schemas[name]["examples"] = examples
        components["securitySchemes"] = {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "`Authorization: Bearer <API_TOKEN>` on the webhook and write routes when API_TOKEN is "
                           "set (and on the compute routes unless API_OPEN_ROUTES names them)"}}
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
