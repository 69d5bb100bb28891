"""Moved to pipeline.embedded.history (the bench uses it too); kept while tests migrate."""

from pipeline.embedded.history import *  # noqa: F403
