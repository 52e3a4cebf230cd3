"""Vendor presets: each turns one vendor's documented lead payload into Baton's canonical lead fields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PresetLead:
    """One lead a preset found in a vendor's payload: canonical fields as sent, and the vendor's own id."""

    fields: dict[str, Any]
    external_id: str | None


Preset = Callable[[Any], list[PresetLead]]
"""Maps a vendor's parsed JSON body to the leads it carries; raises ``Unprocessable`` on a foreign shape."""

from baton_lead_ingest.presets.forms import FORM_PRESETS  # noqa: E402  (they refer to the types above)

PRESETS: dict[str, Preset] = {**FORM_PRESETS}
"""Every preset by the name a source is configured with."""
