"""What the gateway's write routes share: the size limit and field names of a JSON body, and new ids.

Clients send the Python engine's snake_case fields or the MCP server's camelCase ones, so a body model takes
`model_config = SNAKE_OR_CAMEL`: each field is read under its name or its camelCase alias (the name first when
a body has both), and unknown fields are ignored. A field with its own `validation_alias` keeps it.
"""

from __future__ import annotations

import uuid

from pydantic import AliasChoices, AliasGenerator, ConfigDict
from pydantic.alias_generators import to_camel

MAX_WRITE_BODY = 256 * 1024


def _snake_or_camel(name: str) -> AliasChoices:
    return AliasChoices(name, to_camel(name))


SNAKE_OR_CAMEL = ConfigDict(extra="ignore", alias_generator=AliasGenerator(validation_alias=_snake_or_camel))


def new_incident_id() -> str:
    """A fresh id for an incident the API creates: `inc-` and 12 random hex digits."""
    return "inc-" + uuid.uuid4().hex[:12]
