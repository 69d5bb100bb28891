"""Forensics and audit tools over the log: replay, timelines, what-if re-decisions, dead letters."""
