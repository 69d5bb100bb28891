"""The model registry: KServe models discovered from the settings (environment and .env), as the engine does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.adapters.ml import (
    ModelEndpoint,
    ModelNotFound,
    ModelRegistry,
)
from pipeline.config import Settings
from tests.unit.ml_fakes import MODEL


# ------------------------------------------------------------------------------------------ registry
def test_registry_discovers_services_and_model_names_with_the_port_honoured() -> None:
    env = {
        "KSERVE_ANOMALY_DETECTOR_SERVICE": "anomaly-detector-stable",
        "KSERVE_ANOMALY_DETECTOR_MODEL": "model",
        "KSERVE_PREDICTIVE_ANALYTICS_SERVICE": "predictive-analytics-stable",
        "PATH": "/usr/bin",
    }
    registry = ModelRegistry.from_env(env, Settings(kserve_namespace="shp", kserve_predictor_port=8443))
    assert registry.names() == ["anomaly-detector", "predictive-analytics"] and len(registry) == 2
    assert registry.get("anomaly-detector") == ModelEndpoint(
        name="anomaly-detector",
        service="anomaly-detector-stable",
        namespace="shp",
        model="model",
        url="http://anomaly-detector-stable.shp.svc.cluster.local:8443",
    )
    assert registry.get("predictive-analytics").model == "predictive-analytics"  # default: the logical name


def test_registry_port_defaults_to_8080_and_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KSERVE_PREDICTOR_PORT", raising=False)
    monkeypatch.delenv("KSERVE_NAMESPACE", raising=False)
    env = {"KSERVE_ANOMALY_DETECTOR_SERVICE": "ad"}
    assert ModelRegistry.from_env(env, Settings()).get(MODEL).url == (
        "http://ad.self-healing-platform.svc.cluster.local:8080"
    )
    monkeypatch.setenv("KSERVE_PREDICTOR_PORT", "9000")
    monkeypatch.setenv("KSERVE_NAMESPACE", "models")
    assert ModelRegistry.from_env(env, Settings()).get(MODEL).url == "http://ad.models.svc.cluster.local:9000"


def test_registry_models_come_from_the_settings_environment_and_dotenv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The KSERVE_<NAME>_* variables are read with the other settings: from the environment, and from
    `.env` for what the environment does not set."""
    for name in [k for k in os.environ if k.upper().startswith("KSERVE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "KSERVE_PREDICTIVE_ANALYTICS_URL=http://127.0.0.1:9001\nKSERVE_ANOMALY_DETECTOR_SERVICE=from-dotenv\n"
    )
    monkeypatch.setenv("KSERVE_ANOMALY_DETECTOR_SERVICE", "ad-predictor")
    monkeypatch.setenv("KSERVE_ANOMALY_DETECTOR_MODEL", "isolation-forest")
    registry = ModelRegistry.from_settings(Settings(kserve_namespace="shp"))
    assert registry.names() == [MODEL, "predictive-analytics"]
    detector = registry.get(MODEL)
    assert (detector.url, detector.model) == ("http://ad-predictor.shp.svc.cluster.local:8080", "isolation-forest")
    assert registry.get("predictive-analytics").url == "http://127.0.0.1:9001"
    assert ModelRegistry.from_settings(Settings(kserve_entries={})).names() == []


def test_registry_skips_configuration_variables_and_empty_services() -> None:
    env = {
        "KSERVE_NAMESPACE": "shp",
        "KSERVE_TIMEOUT": "10s",
        "KSERVE_PREDICTOR_PORT": "8080",
        "KSERVE_NAMESPACE_SERVICE": "not-a-model",
        "KSERVE_TIMEOUT_SERVICE": "not-a-model",
        "KSERVE_PREDICTOR_PORT_SERVICE": "not-a-model",
        "KSERVE_EMPTY_SERVICE": "",
        "KSERVE_BLANK_SERVICE": "   ",
        "KSERVE_ONLY_MODEL": "model",
        "KSERVE__SERVICE": "nameless",
        "MY_KSERVE_X_SERVICE": "not-ours",
    }
    assert ModelRegistry.from_env(env, Settings()).names() == []


def test_registry_names_are_lower_case_with_dashes() -> None:
    env = {"KSERVE_DISK_FILL_FORECASTER_V2_SERVICE": "dff"}
    assert ModelRegistry.from_env(env, Settings()).names() == ["disk-fill-forecaster-v2"]


def test_registry_url_override_and_fully_qualified_services() -> None:
    env = {
        "KSERVE_LOCAL_URL": "http://127.0.0.1:9999/",
        "KSERVE_BOTH_SERVICE": "both-predictor",
        "KSERVE_BOTH_URL": "https://models.example.test",
        "KSERVE_ELSEWHERE_SERVICE": "ad.other-ns.svc",
    }
    registry = ModelRegistry.from_env(env, Settings(kserve_predictor_port=8081))
    local = registry.get("local")
    assert (local.url, local.service, local.model) == ("http://127.0.0.1:9999", "127.0.0.1", "local")
    both = registry.get("both")
    assert (both.url, both.service) == ("https://models.example.test", "both-predictor")
    assert registry.get("elsewhere").url == "http://ad.other-ns.svc:8081"
    with pytest.raises(ValueError, match="KSERVE_BAD_URL must be an http"):
        ModelRegistry.from_env({"KSERVE_BAD_URL": "ftp://x"}, Settings())


def test_registry_protocol_is_v1_by_default_set_by_kserve_protocol_or_per_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"KSERVE_ANOMALY_DETECTOR_SERVICE": "ad", "KSERVE_PREDICTIVE_ANALYTICS_SERVICE": "pa"}
    monkeypatch.delenv("KSERVE_PROTOCOL", raising=False)
    assert {e.protocol for e in ModelRegistry.from_env(env, Settings())} == {"v1"}
    monkeypatch.setenv("KSERVE_PROTOCOL", "v2")
    assert {e.protocol for e in ModelRegistry.from_env(env, Settings())} == {"v2"}
    mixed = ModelRegistry.from_env({**env, "KSERVE_PREDICTIVE_ANALYTICS_PROTOCOL": "V1"}, Settings())
    assert (mixed.get(MODEL).protocol, mixed.get("predictive-analytics").protocol) == ("v2", "v1")
    with pytest.raises(ValueError, match="KSERVE_ANOMALY_DETECTOR_PROTOCOL must be v1 or v2, got 'grpc'"):
        ModelRegistry.from_env({**env, "KSERVE_ANOMALY_DETECTOR_PROTOCOL": "grpc"}, Settings())
    monkeypatch.setenv("KSERVE_PROTOCOL", "v3")
    with pytest.raises(ValueError, match="kserve_protocol"):
        Settings()


def test_unregistered_models_are_not_found() -> None:
    with pytest.raises(ModelNotFound, match="model not found: nope"):
        ModelRegistry().get("nope")
    assert "nope" not in ModelRegistry()


def test_go_durations_are_accepted_under_the_engines_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KSERVE_TIMEOUT", "2m")
    monkeypatch.setenv("ML_CIRCUIT_BREAKER_TIMEOUT", "1m30s")
    monkeypatch.setenv("ML_SERVICE_TIMEOUT", "500ms")
    monkeypatch.setenv("ML_CIRCUIT_BREAKER_THRESHOLD", "5")
    s = Settings()
    assert (s.kserve_timeout_s, s.ml_circuit_breaker_timeout_s, s.ml_timeout_s) == (120.0, 90.0, 0.5)
    assert s.ml_circuit_breaker_threshold == 5
    defaults = Settings.model_construct()
    assert (defaults.ml_circuit_breaker_threshold, defaults.ml_circuit_breaker_timeout_s) == (3, 30.0)
    assert (defaults.kserve_predictor_port, defaults.kserve_timeout_s) == (8080, 10.0)
