"""Generates Baton's AsyncAPI document from the event models, so the two cannot drift apart."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from baton.events import EVENT_MODELS, TOPICS, dlq_topic


def _message_name(event_type: str) -> str:
    return "".join(part.capitalize() for part in event_type.removeprefix("baton.").replace("_", ".").split("."))


def build_document() -> dict[str, Any]:
    """Builds the AsyncAPI 3.0 document for every topic and event type.

    Returns:
        The document as a JSON-ready dict.
    """
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in TOPICS:
        channel_id = topic.replace(".", "_")
        channel_messages = {}
        for event_type, model in EVENT_MODELS.items():
            if model.topic != topic:
                continue
            name = _message_name(event_type)
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for nested_name, nested in schema.pop("$defs", {}).items():
                schemas[nested_name] = nested
            schemas[model.__name__] = schema
            messages[name] = {
                "name": event_type,
                "title": model.__name__,
                "summary": (model.__doc__ or "").strip(),
                "contentType": "application/json",
                "bindings": {"kafka": {"key": {"type": "string", "description": "lead id"}}},
                "headers": {
                    "type": "object",
                    "required": ["ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "ce_subject"],
                    "properties": {
                        "ce_id": {"type": "string"},
                        "ce_source": {"type": "string"},
                        "ce_type": {"type": "string", "const": event_type},
                        "ce_specversion": {"type": "string", "const": "1.0"},
                        "ce_time": {"type": "string", "format": "date-time"},
                        "ce_subject": {"type": "string", "description": "lead id"},
                    },
                },
                "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
            }
            channel_messages[name] = {"$ref": f"#/components/messages/{name}"}
        channels[channel_id] = {
            "address": topic,
            "description": f"Baton topic {topic}; failed events go to {dlq_topic(topic)}.",
            "messages": channel_messages,
        }
        operations[f"publish_{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{m}"} for m in channel_messages],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Baton events",
            "version": "1.0.0",
            "description": "CloudEvents 1.0 in Kafka binary mode (ce_* headers, JSON body), keyed by lead id.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def render() -> str:
    """Renders the document as stable, indented JSON.

    Returns:
        The text checked in at ``docs/asyncapi.json``.
    """
    return json.dumps(build_document(), indent=2, sort_keys=False) + "\n"


def main() -> None:
    """Writes the document to the path given, or prints it."""
    text = render()
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
