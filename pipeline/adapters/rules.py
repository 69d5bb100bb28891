"""Reading the remediation rules file (`rules/remediation.yaml`): the domain validates, this module reads."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from pipeline.config import read_yaml
from pipeline.domain.arbitration import Rules, RulesError


def load_rules(path: str | Path) -> Rules:
    """Read and validate a rules file; raises RulesError with what is wrong."""
    try:
        raw = read_yaml(Path(path))
        return Rules.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"cannot read rules {path}: {exc}") from exc
    except ValidationError as exc:
        raise RulesError(f"invalid rules {path}: {exc.errors(include_url=False)}") from exc
