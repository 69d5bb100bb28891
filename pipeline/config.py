"""The one configuration object. Every process reads it from the environment (and `.env`).

Names follow the Go coordination engine where it had them (`PORT`, `METRICS_PORT`, `ML_SERVICE_URL`, ...).
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from pipeline import __version__


def packaged(name: str) -> Path:
    """A data directory shipped inside the package: `pipeline/topics` and `pipeline/rules` are symlinks to the
    repository's `topics/` and `rules/` (resolved to them in a checkout) and real directories in a wheel."""
    return (Path(__file__).resolve().parent / name).resolve()


def default_data_dir() -> Path:
    """Where the embedded default keeps its broker data between runs."""
    return Path.home() / ".local" / "share" / "pipeline"


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration_seconds(text: str) -> float:
    """`"30"` or a Go duration (`"120s"`, `"1m30s"`, `"500ms"`) in seconds; ValueError otherwise."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"{text!r} is neither seconds nor a Go duration such as 30s, 1m30s or 500ms")
    return sum(float(number) * _DURATION_UNIT_S[unit] for number, unit in parts)


# The POST routes that compute (model, Prometheus) without writing state: API_TOKEN protects them unless
# API_OPEN_ROUTES opens them (pipeline/compose/app.py).
COMPUTE_ROUTES = ("/api/v1/detect", "/api/v1/predict", "/api/v1/anomalies/analyze", "/api/v1/recommendations")


KSERVE_PREFIX = "KSERVE_"


class _KServeEntries(PydanticBaseSettingsSource):
    """Every `KSERVE_*` variable the environment sources see (the environment first, then `.env`), as the
    `kserve_entries` field: the KServe models are named by variables no field can list in advance. Entries
    given outright (`Settings(kserve_entries={...})`) replace them."""

    def __init__(
        self, settings_cls: type[BaseSettings], given: PydanticBaseSettingsSource, *sources: PydanticBaseSettingsSource
    ) -> None:
        super().__init__(settings_cls)
        self._given, self._sources = given, sources

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if "kserve_entries" in getattr(self._given, "init_kwargs", {}):
            return {}
        entries: dict[str, str] = {}
        for source in self._sources:
            for name, value in getattr(source, "env_vars", {}).items():
                if value is not None and name.upper().startswith(KSERVE_PREFIX):
                    entries.setdefault(name.upper(), value)
        return {"kserve_entries": entries}


class Settings(BaseSettings):
    """All settings of every stage, the gateway and the embedded default."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # Kafka. Empty bootstrap servers means: start the embedded broker (only `pipeline run` does that).
    kafka_bootstrap_servers: str = ""
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    kafka_client_id: str = "pipeline"
    kafka_request_timeout_ms: int = 10_000
    kafka_session_timeout_ms: int = 10_000
    kafka_heartbeat_interval_ms: int = 1_000
    # Every topic name is prefixed: one cluster can hold several pipelines (and tests their own topics).
    topic_prefix: str = "pipeline."
    topic_replication_factor: int = Field(default=1, ge=1)
    topics_dir: Path = Field(default_factory=lambda: packaged("topics"))

    # HTTP (gateway and ingest share the API port; metrics also on METRICS_PORT when it differs).
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    metrics_port: int = Field(default=0, ge=0, le=65535)
    api_token: SecretStr = SecretStr("")
    # Slow and idle clients (pipeline/web/server.py): a request's line and headers must arrive within
    # HTTP_HEADER_TIMEOUT_S of its first byte (or of the connection), its body within HTTP_BODY_TIMEOUT_S of
    # its headers (408 and close otherwise); an idle keep-alive connection is closed after HTTP_KEEP_ALIVE_S;
    # headers over HTTP_MAX_HEADER_BYTES get 431; past HTTP_MAX_CONNECTIONS open connections a request gets 503.
    http_header_timeout_s: float = Field(default=10.0, gt=0)
    http_body_timeout_s: float = Field(default=30.0, gt=0)
    http_keep_alive_s: float = Field(default=5.0, gt=0)
    http_max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    http_max_connections: int = Field(default=4096, ge=1)
    # Compute routes (POST detect, predict, anomalies/analyze, recommendations) named here stay open without
    # the token when API_TOKEN is set, e.g. for the MCP server, which sends none (comma-separated paths).
    api_open_routes: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Outgoing HTTP (Prometheus, KServe, the ML service, Alertmanager; `adapters.http.async_client`): the
    # user agent sent, a CA bundle trusted for every HTTPS dependency without its own *_CA_FILE (empty: the
    # system's), and a proxy (empty: none; HTTP_PROXY/HTTPS_PROXY in the environment are ignored on purpose).
    http_user_agent: str = f"self-healing-pipeline/{__version__}"
    http_ca_file: str = ""
    http_proxy_url: str = ""
    # The gateway the operator CLI asks (`pipeline incidents|decisions|workflows|status`; `--url` wins), with
    # API_TOKEN as its bearer token when set.
    pipeline_url: str = "http://127.0.0.1:8080"

    # Ingest.
    ingest_max_body_bytes: int = Field(default=1 << 20, ge=1024)
    ingest_max_in_flight: int = Field(default=1024, ge=1)
    ingest_produce_timeout_s: float = Field(default=10.0, gt=0)
    # Redeliveries (pipeline/ingest/dedup.py): the ids of at most INGEST_DEDUP_SIZE recent signals are
    # remembered (0: none; only copies in flight at the same time are then recognised), read at start from
    # the newest records of the signals topic (with INGEST_DEDUP_WINDOW_S > 0 only those of the last that many
    # seconds; 0: no time limit) and from then on from the topic as any instance publishes. Ingest waits at
    # most INGEST_DEDUP_SEED_TIMEOUT_S for that start-up read before answering webhooks.
    ingest_dedup_size: int = Field(default=100_000, ge=0)
    ingest_dedup_window_s: float = Field(default=0.0, ge=0)
    ingest_dedup_seed_timeout_s: float = Field(default=15.0, ge=0)
    # What one webhook may carry (UTF-8 bytes; label and annotation totals count names and values). A webhook
    # past any of them is refused whole with 413 naming the field, before anything is stored. The signal
    # record limit must stay below the broker's message.max.bytes (1 MiB by default).
    ingest_max_alerts: int = Field(default=10_000, ge=1, le=10_000)
    ingest_max_label_value_bytes: int = Field(default=2048, ge=64)
    ingest_max_labels_bytes: int = Field(default=16 * 1024, ge=64)
    ingest_max_annotation_value_bytes: int = Field(default=16 * 1024, ge=64)
    ingest_max_annotations_bytes: int = Field(default=64 * 1024, ge=64)
    ingest_max_url_bytes: int = Field(default=8 * 1024, ge=64)
    ingest_max_signal_bytes: int = Field(default=256 * 1024, ge=4096)
    alertmanager_url: str = ""
    alertmanager_ca_file: str = ""
    alertmanager_tls_verify: bool = True
    alertmanager_timeout_s: float = Field(default=10.0, gt=0)

    # Stages.
    stage_batch_size: int = Field(default=500, ge=1)
    stage_batch_timeout_ms: int = Field(default=100, ge=1)
    # A partition held on the same offset while input waits for longer than this is reported stuck
    # (/api/v1/health, pipeline_stage_stuck_seconds); a dead letter's payload above this many bytes is cut.
    stage_stuck_after_s: float = Field(default=60.0, ge=0)
    deadletter_max_payload_bytes: int = Field(default=65536, ge=0)

    # The audit trail (`pipeline stage audit`, pipeline/adapters/audit_log.py): every record of every topic as
    # a hash-chained JSON line in AUDIT_DIR (empty: <DATA_DIR>/audit). A file is rotated once it holds
    # AUDIT_FILE_MAX_BYTES; only the newest AUDIT_RETAIN_FILES files are kept (0: all). The dedup keys of the
    # last AUDIT_DEDUP_IDS lines are remembered (read back from the files at start), so a redelivered or
    # re-produced record is written once. AUDIT_ENABLED: `pipeline run` writes the trail too.
    audit_dir: Path | None = None
    audit_file_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    audit_retain_files: int = Field(default=0, ge=0)
    audit_dedup_ids: int = Field(default=200_000, ge=1)
    audit_enabled: bool = False

    # Prometheus / Thanos Querier (the engine's PROMETHEUS_URL). Empty: enrichment reports every feature
    # missing with reason "prometheus not configured".
    prometheus_url: str = ""
    prometheus_token: SecretStr = SecretStr("")
    prometheus_token_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    prometheus_ca_file: str = ""
    prometheus_tls_verify: bool = True
    prometheus_timeout_s: float = Field(default=10.0, gt=0)
    prometheus_max_concurrency: int = Field(default=8, ge=1)
    prometheus_retry_attempts: int = Field(default=3, ge=1)
    thanos_dedup: bool | None = None
    thanos_partial_response: bool | None = None

    # Gateway.
    gateway_write_timeout_s: float = Field(default=10.0, gt=0)
    # Alerts an incident lists in the read model (firing ones first); `alerts_total` counts them all.
    incident_alerts_listed: int = Field(default=100, ge=1)
    # Forensics: an incident's timeline is read from its `received_at` (else `created_at`) minus this many seconds
    # (clock skew between the producers), to the end of the log (domain/timeline.py).
    timeline_margin_s: float = Field(default=300.0, ge=0)
    # Start the read models from the snapshot topics (written by the snapshot stage) and tail the log from their
    # watermarks; false: fold every source topic from its beginning (what the snapshots are checked against).
    gateway_snapshots: bool = True

    # ML. KServe models are discovered from KSERVE_<NAME>_SERVICE / KSERVE_<NAME>_MODEL (and, for tests or
    # use outside a cluster, KSERVE_<NAME>_URL) by `adapters.ml.ModelRegistry.from_settings`: every KSERVE_*
    # variable is captured in `kserve_entries` when the settings are read. Durations accept seconds or the
    # engine's Go durations under its env names (KSERVE_TIMEOUT=120s, ML_SERVICE_TIMEOUT=30s).
    kserve_entries: dict[str, str] = Field(default_factory=dict)
    ml_service_url: str = ""
    ml_timeout_s: float = Field(
        default=30.0, gt=0, validation_alias=AliasChoices("ml_timeout_s", "ml_service_timeout")
    )
    kserve_namespace: str = "self-healing-platform"
    # TLS for KServe and the ML service alike (OpenShift serving certificates: the service CA bundle).
    ml_ca_file: str = ""
    ml_tls_verify: bool = True
    kserve_predictor_port: int = Field(default=8080, ge=1, le=65535)
    kserve_timeout_s: float = Field(
        default=10.0, gt=0, le=120, validation_alias=AliasChoices("kserve_timeout_s", "kserve_timeout")
    )
    # The protocol our KServe client speaks: v1 (`/v1/models/<m>:predict`, the engine's) or v2, the Open
    # Inference Protocol (`/v2/models/<m>/infer`). `KSERVE_<NAME>_PROTOCOL` overrides it for one model.
    kserve_protocol: Literal["v1", "v2"] = "v1"
    ml_retry_attempts: int = Field(default=3, ge=1)
    ml_circuit_breaker_threshold: int = Field(default=3, ge=1)
    ml_circuit_breaker_timeout_s: float = Field(
        default=30.0,
        gt=0,
        validation_alias=AliasChoices("ml_circuit_breaker_timeout_s", "ml_circuit_breaker_timeout"),
    )

    # Embedded default.
    # Kubernetes watch (issue 6): cluster objects and events become signals.
    kube_watch: bool = False  # `pipeline run` starts the watcher only when this is on
    kubeconfig: str = Field(default="", validation_alias=AliasChoices("kubeconfig", "KUBECONFIG"))  # empty: in-cluster
    kube_context: str = ""
    kubernetes_service_host: str = ""  # set by Kubernetes in every pod: a service account may be used
    cluster_name: str = ""  # the signals' origin
    watch_namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)  # comma-separated globs; empty: all
    watch_exclude_namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    watch_event_apis: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["core", "events.k8s.io"])
    watch_probe_failure_threshold: int = Field(default=3, ge=1)
    watch_timeout_s: int = Field(default=300, ge=1)  # server-side watch timeout; the watch resumes from its rv
    watch_crashloop_settle_s: float = Field(default=300.0, ge=0)  # a crash loop is over after this long running
    watch_resync_s: float = Field(default=60.0, gt=0)  # re-evaluate objects with firing conditions this often
    watch_lease_name: str = "pipeline-watch"
    watch_lease_namespace: str = ""  # empty: NAMESPACE, else "default"
    watch_lease_duration_s: float = Field(default=15.0, gt=0)
    watch_lease_renew_s: float = Field(default=5.0, gt=0)
    watch_lease_retry_s: float = Field(default=2.0, gt=0)
    watch_identity: str = ""  # empty: hostname-pid
    # Remediation arbitration (issue 5): the rules file and the policy every decision is held to.
    remediation_rules_path: Path = Field(default_factory=lambda: packaged("rules") / "remediation.yaml")
    remediation_kill_switch: bool = False  # on: every proposal is rejected (reason kill_switch)
    remediation_protected_namespaces: Annotated[list[str], NoDecode] = Field(  # comma-separated
        default_factory=lambda: ["kube-system", "openshift-etcd", "openshift-kube-apiserver"])
    remediation_cooldown_s: float = Field(default=300.0, ge=0)
    remediation_namespace_budget: int = Field(default=2, ge=0)
    remediation_action_timeout_s: float = Field(default=1800.0, gt=0)
    remediation_approval: list[dict[str, object]] | None = None  # JSON list of approval rules; None: defaults
    remediation_decided_memory: int = Field(default=2000, ge=1)  # decided proposal ids kept per namespace
    confidence_threshold: float = Field(default=0.7, ge=0, le=1)  # AI proposals below it are rejected
    # Remediation execution (issue 10): what the remediate stage does with approved decisions.
    remediation_mode: Literal["off", "dry-run", "approve", "auto"] = "auto"
    remediation_step_timeout_s: float = Field(default=120.0, gt=0)
    remediation_checkpoint_timeout_s: float = Field(default=180.0, gt=0)
    remediation_poll_s: float = Field(default=1.0, gt=0)  # how often a checkpoint is polled
    remediation_storm_max_unhealthy: float = Field(default=0.5, ge=0, le=1)  # share of a namespace's pods
    remediation_storm_min_unhealthy: int = Field(default=3, ge=1)  # ... and at least this many
    remediation_identity: str = ""  # empty: hostname-pid
    helm_binary: str = ""  # e.g. "helm": Helm-managed workloads are rolled back with it; empty: such steps fail
    # Namespace-scoped RBAC (the chart with an exact watch.namespaces list): the namespaces where remediate holds
    # its rights, so its start-up self-check asks there instead of cluster-wide; empty: cluster-wide.
    remediation_namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Where deployment-method detection (remediate, the gateway) lists ArgoCD Applications, one namespace at a
    # time; empty: every namespace at once (`/apis/argoproj.io/v1alpha1/applications`, a cluster-wide right).
    argocd_namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    embedded_ml_port: int = Field(default=0, ge=0, le=65535)  # the reference ML service (0: any free port)
    embedded_ml_url: str = ""  # set by `pipeline run` once the reference service is up
    data_dir: Path = Field(default_factory=default_data_dir)
    # Everything downloaded or built (Kafka jars, component binaries, the reference model): one directory, so CI
    # can cache it.
    cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "pipeline",
        validation_alias=AliasChoices("PIPELINE_CACHE_DIR", "cache_dir"),
    )
    embedded_kafka_port: int = Field(default=19092, ge=0, le=65535)

    # The namespace this deployment runs in (the engine's NAMESPACE), reported by /api/v1/health.
    namespace: str = ""

    log_level: str = "INFO"
    # json: one JSON object per line on stderr; console: aligned key=value lines for a human; auto: console when
    # stderr is a terminal, else json (observability.configure_logging).
    log_format: Literal["auto", "json", "console"] = "auto"
    # The no-color.org convention: any non-empty NO_COLOR turns the terminal colours of the CLI off
    # (`pipeline replay`); --color still forces them.
    no_color: str = ""
    # The same logger + message at warning or above at most once per this many seconds (with a count of the
    # suppressed repeats on the next line); 0 logs every repeat.
    log_repeat_window_s: float = Field(default=10.0, ge=0)
    # How often each process checks that the broker is reachable, to log one line when it goes away and one
    # when it is back.
    broker_watch_interval_s: float = Field(default=5.0, gt=0)
    version: str = __version__

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, and the KSERVE_* variables they see into `kserve_entries`."""
        entries = _KServeEntries(settings_cls, init_settings, env_settings, dotenv_settings)
        return init_settings, entries, env_settings, dotenv_settings, file_secret_settings

    @field_validator("cache_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("ml_timeout_s", "kserve_timeout_s", "ml_circuit_breaker_timeout_s", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> object:
        return go_duration_seconds(value) if isinstance(value, str) else value

    @field_validator("remediation_protected_namespaces", "watch_namespaces", "watch_exclude_namespaces",
                     "watch_event_apis", "remediation_namespaces", "argocd_namespaces", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @field_validator("api_open_routes", mode="before")
    @classmethod
    def _open_routes(cls, value: object) -> object:
        if isinstance(value, str):
            routes: list[object] = [v.strip().rstrip("/") for v in value.split(",") if v.strip()]
        elif isinstance(value, list | tuple):
            routes = list(value)
        else:
            return value  # not a list: pydantic says so
        unknown = [r for r in routes or [] if r not in COMPUTE_ROUTES]
        if unknown:
            raise ValueError(f"API_OPEN_ROUTES may only name the compute routes {', '.join(COMPUTE_ROUTES)}; "
                             f"not {', '.join(map(str, unknown))}")
        return routes

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_a_topic_name(cls, value: str) -> str:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if not set(value) <= allowed:
            raise ValueError("topic_prefix may only contain letters, digits, '.', '_' and '-'")
        return value

    @property
    def cluster_configured(self) -> bool:
        """A cluster to act on: a kubeconfig, or a pod's service account."""
        return bool(self.kubeconfig) or bool(self.kubernetes_service_host)

    @property
    def audit_directory(self) -> Path:
        """Where the audit trail is written: AUDIT_DIR, else <DATA_DIR>/audit."""
        return self.audit_dir if self.audit_dir is not None else self.data_dir / "audit"

    def topic(self, name: str) -> str:
        """The full topic name of a logical topic (`signals` -> `pipeline.signals`)."""
        return f"{self.topic_prefix}{name}"

    @cached_property
    def bearer_token(self) -> str | None:
        token = self.api_token.get_secret_value()
        return token or None


ML_EXTRA = "the reference ML model needs the `ml` extra (scikit-learn): pip install 'pipeline[ml]'"


def ml_installed() -> bool:
    """Whether the `ml` extra (scikit-learn) is installed, found without importing it (0.5 s)."""
    import importlib.util

    try:
        return importlib.util.find_spec("sklearn") is not None
    except (ImportError, ValueError):  # a module entry of None: made unimportable
        return False


class ConfigError(ValueError):
    """A setting (an environment variable) or a start-up resource it names is wrong: the message is one line that
    names the variable and says how to fix it."""


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment; keyword overrides win (used by the CLI and tests). `ConfigError`
    naming the environment variable when one is invalid."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(settings_error(exc)) from None


def env_name(field: str) -> str:
    """The environment variable that sets a settings field (its first alias when it has several)."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices) and alias.choices and isinstance(alias.choices[0], str):
        return alias.choices[0].upper()
    return field.upper()


def settings_error(exc: Any) -> str:
    """A pydantic ValidationError of Settings as one line: each invalid variable, its value, what is wrong, its
    default."""
    parts = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        name = env_name(field)
        info = Settings.model_fields.get(field)
        default = "" if info is None or info.is_required() else f"; unset it for the default ({info.get_default(call_default_factory=True)!r})"
        value = error.get("input")
        shown = f"={str(value)[:60]!r}" if isinstance(value, str | int | float) else ""
        parts.append(f"{name}{shown}: {error['msg']}{default}")
    return "invalid configuration: " + "; ".join(parts)


def read_yaml(path: Path) -> Any:
    """A YAML file's one document, parsed with libyaml's C loader when PyYAML has it (10x the pure-Python
    loader: the rules and topic files are read at every start), else the pure-Python safe loader."""
    import yaml

    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - safe
