"""Moved to pipeline.embedded.prometheus (the bench uses it too); kept while tests migrate."""

from pipeline.embedded.prometheus import *  # noqa: F403
