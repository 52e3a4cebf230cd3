"""Vendor presets: each turns one vendor's documented lead payload into Baton's canonical lead fields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PresetLead:
    """One lead a preset found in a vendor's payload: canonical fields as sent, and the vendor's own id.

    ``external_id`` is also among ``fields`` when the payload has one; it is kept apart for idempotent retries.
    """

    fields: dict[str, Any]
    external_id: str | None


Preset = Callable[[Any], list[PresetLead]]

PERSON_ID_PRESETS = frozenset({"marketo"})
"""Presets whose ``external_id`` names the person (Marketo's lead id), not the submission: the same id comes again
with every later webhook about that person, so it cannot tell a retried delivery from a new one."""
"""Maps a vendor's parsed JSON body to the leads it carries; raises ``Unprocessable`` on a foreign shape."""

# The preset modules refer to the types above, so they are imported after them.
from baton_lead_ingest.presets.forms import FORM_PRESETS  # noqa: E402
from baton_lead_ingest.presets.vendors import VENDOR_PRESETS  # noqa: E402

PRESETS: dict[str, Preset] = {**VENDOR_PRESETS, **FORM_PRESETS}
"""Every preset by the name a source is configured with."""
