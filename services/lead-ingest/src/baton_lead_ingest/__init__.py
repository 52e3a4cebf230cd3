"""Baton lead-ingest: webhook and API intake, validation, dedupe."""
