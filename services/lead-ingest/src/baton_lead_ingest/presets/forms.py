"""Form-builder presets."""

from __future__ import annotations

from baton_lead_ingest.presets import Preset

FORM_PRESETS: dict[str, Preset] = {}
"""Form-builder presets by name."""
