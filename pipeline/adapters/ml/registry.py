"""The KServe models this process may call, discovered from KSERVE_<NAME>_* variables as the engine does.

The variables are read once, with the rest of the configuration (`Settings.kserve_entries`); see
`ModelRegistry.from_env` for the rules and docs/operations.md for the names.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pipeline.adapters.ml.errors import ModelNotFound
from pipeline.config import Settings

_CONFIG_PREFIXES = ("KSERVE_NAMESPACE", "KSERVE_TIMEOUT", "KSERVE_PREDICTOR_PORT")

KServeProtocol = Literal["v1", "v2"]
PROTOCOLS: tuple[KServeProtocol, ...] = ("v1", "v2")


@dataclass(frozen=True, slots=True)
class ModelEndpoint:
    """One KServe model: its logical name (API), service, namespace, name in KServe paths, base URL, and
    the protocol it is called with."""

    name: str
    service: str
    namespace: str
    model: str
    url: str
    protocol: KServeProtocol = "v1"


class ModelRegistry:
    """The logical models this process may call, in name order."""

    def __init__(self, endpoints: Iterable[ModelEndpoint] = ()) -> None:
        self._by_name = {e.name: e for e in sorted(endpoints, key=lambda e: e.name)}

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRegistry:
        """The models named by the KSERVE_* variables the settings were read with (`kserve_entries`)."""
        return cls.from_env(settings.kserve_entries, settings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], settings: Settings) -> ModelRegistry:
        """The models named by `environ`'s KSERVE_* entries: the engine's discovery rules, with the predictor port honoured and a URL override.

        Every non-empty `KSERVE_<NAME>_SERVICE` (or `KSERVE_<NAME>_URL`) registers the logical model
        `<name>` lower-cased with `_` -> `-`; variables starting with KSERVE_NAMESPACE, KSERVE_TIMEOUT or
        KSERVE_PREDICTOR_PORT are configuration, not models. `KSERVE_<NAME>_MODEL` names the model in KServe
        paths (default: the logical name). The base URL is `http://<service>.<KSERVE_NAMESPACE>.svc.cluster.local
        :<KSERVE_PREDICTOR_PORT>` (a service containing a dot is used as the host as it is), unless
        `KSERVE_<NAME>_URL` gives it outright. `KSERVE_<NAME>_PROTOCOL` (v1 or v2) overrides `KSERVE_PROTOCOL`.
        """
        prefixes = set()
        for key, value in environ.items():
            if not key.startswith("KSERVE_") or key.startswith(_CONFIG_PREFIXES) or not value.strip():
                continue
            for suffix in ("_SERVICE", "_URL"):
                if key.endswith(suffix) and len(key) > len("KSERVE_") + len(suffix):
                    prefixes.add(key.removesuffix(suffix))
        return cls(_endpoint(prefix, environ, settings) for prefix in prefixes)

    def get(self, name: str) -> ModelEndpoint:
        try:
            return self._by_name[name]
        except KeyError:
            raise ModelNotFound(name) from None

    def names(self) -> list[str]:
        return list(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[ModelEndpoint]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)


def _endpoint(prefix: str, environ: Mapping[str, str], settings: Settings) -> ModelEndpoint:
    name = prefix.removeprefix("KSERVE_").lower().replace("_", "-")
    service = environ.get(f"{prefix}_SERVICE", "").strip()
    model = environ.get(f"{prefix}_MODEL", "").strip() or name
    url = environ.get(f"{prefix}_URL", "").strip().rstrip("/")
    protocol = environ.get(f"{prefix}_PROTOCOL", "").strip().lower() or settings.kserve_protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"{prefix}_PROTOCOL must be v1 or v2, got {protocol!r}")
    namespace = settings.kserve_namespace
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{prefix}_URL must be an http(s) URL, got {url!r}")
        service = service or parts.hostname
    else:
        host = service if "." in service or not namespace else f"{service}.{namespace}.svc.cluster.local"
        url = f"http://{host}:{settings.kserve_predictor_port}"
    return ModelEndpoint(
        name=name,
        service=service,
        namespace=namespace,
        model=model,
        url=url,
        protocol=protocol,
    )

