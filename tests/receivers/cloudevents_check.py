#!/usr/bin/env python3
"""Parses Kafka messages as CloudEvents (binary content mode) with the CloudEvents Python SDK.

The end-to-end tests send the dead letters they read here to learn whether a stock CloudEvents
subscriber can read them. The SDK (PyPI ``cloudevents``, pinned in requirements.txt) is
installed by deploy/local/prereqs.sh into $KIZUNA_CACHE_DIR/venv-receivers.

stdin: one JSON array of messages, each ``{"key": hex | null, "value": hex,
"headers": [[name, hex], ...]}``.
stdout: one JSON array, one entry per message, in order: ``{"ok": true, "attributes": {...},
"data_bytes": N}`` with every attribute (``time`` as ISO 8601) as the SDK's strict v2 API
(``cloudevents.core.bindings.kafka.from_binary``) parsed it, after the SDK's v1 API
(``cloudevents.v1.kafka.from_binary``) also parsed it to the same id, type and source; or
``{"ok": false, "error": "..."}``.
"""

import datetime
import json
import sys

from cloudevents.core.bindings import kafka as kafka_v2
from cloudevents.core.formats.json import JSONFormat
from cloudevents.v1 import kafka as kafka_v1


def attribute(value):
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def check(message):
    key = None if message["key"] is None else bytes.fromhex(message["key"])
    value = bytes.fromhex(message["value"])
    headers = {}
    for name, raw in message["headers"]:
        if name in headers:
            return {"ok": False, "error": f"header {name} twice"}
        headers[name] = bytes.fromhex(raw)
    try:
        event = kafka_v2.from_binary(
            kafka_v2.KafkaMessage(headers=headers, key=key, value=value), JSONFormat()
        )
        legacy = kafka_v1.from_binary(
            kafka_v1.KafkaMessage(headers=headers, key=key, value=value),
            data_unmarshaller=lambda body: body,
        )
    except Exception as e:  # noqa: BLE001 - every failure is the answer
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    attributes = {k: attribute(v) for k, v in event.get_attributes().items()}
    for name in ("id", "type", "source", "specversion"):
        if legacy[name] != attributes[name]:
            return {
                "ok": False,
                "error": f"v1 and v2 APIs disagree on {name}: {legacy[name]!r} != {attributes[name]!r}",
            }
    data = event.get_data()
    size = len(data) if isinstance(data, (bytes, str)) else len(json.dumps(data))
    return {"ok": True, "attributes": attributes, "data_bytes": size}


def main():
    messages = json.load(sys.stdin)
    json.dump([check(m) for m in messages], sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
