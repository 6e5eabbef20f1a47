#!/usr/bin/env python3
"""Generates docs/asyncapi.yaml, the AsyncAPI 3.0 description of Kizuna's topics.

The channels, operations and headers are written below; the message payload schemas are
derived from the kizuna.v1 protos themselves (a descriptor set with comments, made by
`buf build -o DESC.json`), as JSON Schemas of the protobuf JSON mapping, so the document
cannot drift from the contracts. Topic names come from the engine's and kizuna-webhooks'
config/default.toml.

    asyncapi.py DESC.json OUT.yaml           write the document
    asyncapi.py DESC.json OUT.yaml --check   exit 1 if OUT.yaml differs from what it would write
"""

import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "kizuna.v1"
# The base of every output's ce_dataschema, read from where the services take it.
DATASCHEMA_BASE = re.search(
    r'pub const DATASCHEMA_BASE: &str =\s*"([^"]+)"',
    (REPO / "proto/src/lib.rs").read_text(),
).group(1)

SCALARS = {
    "TYPE_STRING": {"type": "string"},
    "TYPE_BOOL": {"type": "boolean"},
    "TYPE_DOUBLE": {"type": "number"},
    "TYPE_FLOAT": {"type": "number"},
    "TYPE_INT32": {"type": "integer", "format": "int32"},
    "TYPE_SINT32": {"type": "integer", "format": "int32"},
    "TYPE_SFIXED32": {"type": "integer", "format": "int32"},
    "TYPE_UINT32": {"type": "integer", "format": "uint32", "minimum": 0},
    "TYPE_FIXED32": {"type": "integer", "format": "uint32", "minimum": 0},
    # The protobuf JSON mapping writes 64-bit integers as strings and reads both.
    "TYPE_INT64": {"type": ["string", "integer"], "format": "int64"},
    "TYPE_SINT64": {"type": ["string", "integer"], "format": "int64"},
    "TYPE_SFIXED64": {"type": ["string", "integer"], "format": "int64"},
    "TYPE_UINT64": {"type": ["string", "integer"], "format": "uint64"},
    "TYPE_FIXED64": {"type": ["string", "integer"], "format": "uint64"},
    "TYPE_BYTES": {"type": "string", "contentEncoding": "base64"},
}


def comments(file):
    """Leading comments by descriptor path (tuple)."""
    out = {}
    for loc in file.get("sourceCodeInfo", {}).get("location", []):
        text = loc.get("leadingComments") or loc.get("trailingComments")
        if text:
            lines = [line.strip() for line in text.strip("\n").split("\n")]
            out[tuple(loc.get("path", []))] = "\n".join(lines).strip()
    return out


def schemas(descriptor):
    """JSON Schemas (protobuf JSON mapping) of every kizuna.v1 message and enum."""
    out = {}
    for file in descriptor["file"]:
        if file.get("package") != PACKAGE:
            continue
        notes = comments(file)
        for ei, enum in enumerate(file.get("enumType", [])):
            schema = {"type": "string", "enum": [v["name"] for v in enum["value"]]}
            if (5, ei) in notes:
                schema["description"] = notes[(5, ei)]
            out[enum["name"]] = schema
        for mi, msg in enumerate(file.get("messageType", [])):
            props = {}
            oneofs = {}
            for fi, field in enumerate(msg.get("field", [])):
                if field["type"] in ("TYPE_MESSAGE", "TYPE_ENUM"):
                    type_name = field["typeName"]
                    if type_name == ".google.protobuf.Timestamp":
                        schema = {"type": "string", "format": "date-time"}
                    else:
                        name = type_name.rsplit(".", 1)[-1]
                        schema = {"$ref": f"#/components/schemas/{name}"}
                else:
                    schema = dict(SCALARS[field["type"]])
                if field.get("label") == "LABEL_REPEATED":
                    schema = {"type": "array", "items": schema}
                note = notes.get((4, mi, 2, fi))
                if note:
                    schema = (
                        {"description": note, "allOf": [schema]}
                        if "$ref" in schema
                        else {"description": note, **schema}
                    )
                props[field["jsonName"]] = schema
                if "oneofIndex" in field and not field.get("proto3Optional"):
                    oneofs.setdefault(field["oneofIndex"], []).append(field["jsonName"])
            schema = {"type": "object", "properties": props}
            if (4, mi) in notes:
                schema = {"description": notes[(4, mi)], **schema}
            if oneofs:
                # A oneof: exactly one of its fields is set.
                schema["oneOf"] = [
                    {"required": [name]} for names in oneofs.values() for name in names
                ]
            out[msg["name"]] = schema
    return dict(sorted(out.items()))


def ce_headers(ce_type):
    return {
        "type": "object",
        "description": "CloudEvents Kafka protocol binding, binary content mode (ce_* headers).",
        "required": [
            "ce_specversion",
            "ce_id",
            "ce_type",
            "ce_source",
            "ce_time",
            "ce_subject",
            "ce_dataschema",
            "content-type",
        ],
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": {
                "type": "string",
                "format": "uuid",
                "description": "Deterministic: the same output of the same cause has the same id, so a redelivery can be deduplicated.",
            },
            "ce_type": {"type": "string", "const": ce_type},
            "ce_source": {"type": "string"},
            "ce_time": {
                "type": "string",
                "format": "date-time",
                "description": "When the change took effect (RFC 3339, milliseconds).",
            },
            "ce_subject": {
                "type": "string",
                "description": "The customer id (the subscription id for WebhookSubscriptionDisabled).",
            },
            "ce_dataschema": {
                "type": "string",
                "format": "uri",
                "const": DATASCHEMA_BASE + ce_type,
                "description": "The proto file that defines the payload, # the message's full name (also its ce_type).",
            },
            "content-type": {
                "type": "string",
                "enum": ["application/json", "application/x-protobuf"],
                "description": "application/json (the protobuf JSON mapping) by default; application/x-protobuf in Schema Registry framing with outputs.format = \"confluent-protobuf\" (the engine's outputs).",
            },
            "traceparent": {
                "type": "string",
                "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                "description": "W3C Trace Context, when the input that caused the output carried one: the producer's trace, so a subscriber's trace joins it (README: Traces).",
            },
        },
    }


INPUT_HEADERS = {
    "type": "object",
    "properties": {
        "content-type": {
            "type": "string",
            "enum": ["application/json", "application/x-protobuf"],
            "description": "The protobuf JSON mapping (the default, also when absent) or binary protobuf. A payload in Schema Registry framing (magic byte 0, a 4-byte schema id, message indexes: Confluent's wire format) is read as such whatever this header says (README: Schema Registry).",
        },
        "ce_type": {
            "type": "string",
            "description": "Optional: the message's full name, e.g. kizuna.v1.Purchase.",
        },
        "kizuna-schema": {
            "type": "string",
            "description": "Optional: the schema version, kizuna.v1.",
        },
        "traceparent": {
            "type": "string",
            "description": "Optional W3C Trace Context: continued by the engine and set on every output the message causes (README: Traces).",
        },
    },
}

DEAD_LETTER_HEADERS = {
    "type": "object",
    "required": [
        "kizuna-dlq-reason",
        "kizuna-dlq-detail",
        "kizuna-dlq-topic",
        "kizuna-dlq-partition",
        "kizuna-dlq-offset",
        "kizuna-dlq-time",
        "ce_specversion",
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_time",
    ],
    "properties": {
        "kizuna-dlq-reason": {
            "type": "string",
            "description": "A low-cardinality reason (unparseable, missing_field, too_old, processing_failed, insufficient_points, …): the README's table.",
        },
        "kizuna-dlq-detail": {"type": "string", "maxLength": 1100},
        "kizuna-dlq-topic": {"type": "string", "description": "The input topic."},
        "kizuna-dlq-partition": {"type": "string"},
        "kizuna-dlq-offset": {"type": "string"},
        "kizuna-dlq-time": {"type": "string", "format": "date-time"},
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_type": {"type": "string", "const": "kizuna.v1.DeadLetter"},
        "ce_source": {"type": "string", "const": "kizuna/loyalty-engine"},
        "ce_id": {
            "type": "string",
            "format": "uuid",
            "description": "Deterministic from the input's topic, partition and offset.",
        },
        "ce_time": {
            "type": "string",
            "format": "date-time",
            "description": "When it was dead-lettered (engine time), as kizuna-dlq-time.",
        },
        "ce_subject": {
            "type": "string",
            "description": "The input's key (the customer id), when it had one and it is UTF-8.",
        },
        "content-type": {
            "type": "string",
            "description": "The input's own content-type (the CloudEvent's datacontenttype), when it had one, it is UTF-8 and it is not an application/cloudevents type.",
        },
        "traceparent": {
            "type": "string",
            "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
            "description": "W3C Trace Context, when the input carried one (README: Traces).",
        },
        "kizuna-dlq-content-type": {
            "type": "string",
            "description": "The input's content-type when it was an application/cloudevents type (structured mode), kept here so that the dead letter stays a binary-mode CloudEvent.",
        },
    },
    "patternProperties": {
        "^ce_original[a-z0-9]+$": {
            "type": "string",
            "description": "The input's own ce_* headers as CloudEvents extensions: ce_ + original + the attribute name lowercased, with anything but a-z0-9 dropped (ce_id becomes ce_originalid, ce_type ce_originaltype, ce_Shop_Region ce_originalshopregion). Values that are not UTF-8 are left out.",
        },
    },
}


def document(descriptor):
    engine = tomllib.loads(
        (REPO / "services/loyalty-engine/config/default.toml").read_text()
    )["kafka"]["topics"]
    webhooks = tomllib.loads(
        (REPO / "services/webhooks/config/default.toml").read_text()
    )["kafka"]["topics"]
    key = {
        "type": "string",
        "description": "The customer id. Producers should partition by the Java client's murmur2 (see the README).",
    }
    ref = lambda kind, name: {"$ref": f"#/components/{kind}/{name}"}  # noqa: E731

    def output(name, summary):
        return {
            "name": name,
            "title": name,
            "summary": summary,
            "contentType": "application/json",
            "headers": ce_headers(f"{PACKAGE}.{name}"),
            "payload": ref("schemas", name),
            "bindings": {"kafka": {"key": key, "bindingVersion": "0.5.0"}},
        }

    def input_message(name, summary, field):
        """`field`: its name in InputEvent, None when InputEvent cannot wrap it."""
        payload = (
            {
                "description": f"A kizuna.v1 {name}, or an InputEvent wrapping one as `{field}`.",
                "oneOf": [ref("schemas", name), ref("schemas", "InputEvent")],
            }
            if field
            else ref("schemas", name)
        )
        return {
            "name": name,
            "title": name,
            "summary": summary,
            "contentType": "application/json",
            "headers": INPUT_HEADERS,
            "payload": payload,
            "bindings": {"kafka": {"key": key, "bindingVersion": "0.5.0"}},
        }

    messages = {
        "Purchase": input_message("Purchase", "An order, or a refund or return of (part of) one.", "purchase"),
        "SupportTicket": input_message("SupportTicket", "A support ticket's state.", "supportTicket"),
        "SurveyResponse": input_message("SurveyResponse", "An NPS, CSAT or CES answer.", "surveyResponse"),
        "Redemption": input_message("Redemption", "Points spent at the till (REDEMPTION_KIND_REDEEM) or an earlier redemption given back (REDEMPTION_KIND_CANCEL). redemptionId is the idempotency key.", None),
        "TierChanged": output("TierChanged", "A customer's tier changed (upgrade, downgrade, override)."),
        "TierWillDowngrade": output("TierWillDowngrade", "A customer no longer qualifies and will drop a tier unless they requalify."),
        "ChurnRiskChanged": output("ChurnRiskChanged", "A customer's churn level changed, with its drivers and a recommended play."),
        "SegmentChanged": output("SegmentChanged", "A customer moved in the customer grid."),
        "PointsChanged": output("PointsChanged", "What a batch of events (or the passing of time: releases, expiries) did to a customer's points, with the balances after it."),
        "PointsWillExpire": output("PointsWillExpire", "A lot of a customer's points expires soon (points.expiry.warn_days ahead)."),
        "CustomerErased": {
            **output("CustomerErased", "The receipt of an erasure: the id's keyed hash (HMAC-SHA256 under privacy.erasure_key), never the id."),
            "bindings": {"kafka": {"key": {"type": "string", "description": "The subject hash (not the customer id)."}, "bindingVersion": "0.5.0"}},
        },
        "WebhookSubscriptionDisabled": output("WebhookSubscriptionDisabled", "kizuna-webhooks disabled a subscription that kept failing."),
        "DeadLetter": {
            "name": "DeadLetter",
            "title": "Dead letter",
            "summary": "An input the engine could not accept: its raw bytes, unchanged, with headers naming why and where it came from. A CloudEvent in Kafka binary mode (ce_type kizuna.v1.DeadLetter); the input's own ce_* headers are kept as ce_original* extensions.",
            "contentType": "application/octet-stream",
            "headers": DEAD_LETTER_HEADERS,
            "payload": {"type": "string", "description": "The input's raw bytes."},
            "bindings": {"kafka": {"key": {"type": "string", "description": "The input's key, unchanged."}, "bindingVersion": "0.5.0"}},
        },
    }

    channels = {}
    operations = {}

    def channel(cid, address, description, names, action, op_summary):
        channels[cid] = {
            "address": address,
            "description": description,
            "messages": {n: ref("messages", n) for n in names},
        }
        operations[f"{action}{cid[0].upper()}{cid[1:]}"] = {
            "action": action,
            "summary": op_summary,
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/{n}"} for n in names],
        }

    channel("purchases", engine["purchases"], "Input: purchases, refunds and returns. Key = customer id.", ["Purchase"], "receive", "The engine consumes purchases (the gateway produces them from Shopify orders and refunds).")
    channel("supportTickets", engine["support_tickets"], "Input: support-ticket events. Key = customer id.", ["SupportTicket"], "receive", "The engine consumes ticket events (the gateway produces them from Zendesk).")
    channel("surveys", engine["surveys"], "Input: survey answers (NPS, CSAT, CES). Key = customer id.", ["SurveyResponse"], "receive", "The engine consumes survey answers (the gateway produces them from Typeform).")
    channel("redemptions", engine["redemptions"], "Input: points redeemed at the till, and cancels. Key = customer id. A redemption the points book refuses (insufficient_points, unknown_reward, reward_cost_mismatch, tier_too_low, points_not_positive, unknown_redemption, points_disabled) is dead-lettered with that reason; the same redemptionId again moves points once.", ["Redemption"], "receive", "The engine consumes redemptions and cancels.")
    channel("tierChanged", engine["tier_changed"], "Output: tier changes and announced downgrades. Key = customer id; one customer's events in order.", ["TierChanged", "TierWillDowngrade"], "send", "The engine publishes tier changes through its transactional outbox.")
    channel("churnRisk", engine["churn_risk"], "Output: churn-level changes with drivers and a play. Key = customer id.", ["ChurnRiskChanged"], "send", "The engine publishes churn-risk changes.")
    channel("segmentChanged", engine["segment_changed"], "Output: customer-grid segment changes. Key = customer id.", ["SegmentChanged"], "send", "The engine publishes segment changes.")
    channel("points", engine["points"], "Output: points changes per customer per batch, and lots about to expire. Key = customer id.", ["PointsChanged", "PointsWillExpire"], "send", "The engine publishes points changes through its transactional outbox; the sweeper raises expiry warnings.")
    channel("privacy", engine["privacy"], "Output: erasure receipts. Key = the erased id's keyed hash; a subscriber holding privacy.erasure_key hashes the ids it keeps and erases the match.", ["CustomerErased"], "send", "The engine publishes an erasure's receipt through its transactional outbox.")
    channel("deadLetter", engine["dead_letter"], "Output: inputs that could not be accepted, never silently dropped.", ["DeadLetter"], "send", "The engine dead-letters bad input and moves on.")
    channel("webhooks", webhooks["webhooks"], "Output of kizuna-webhooks: what it did to subscriptions. Key = subscription id.", ["WebhookSubscriptionDisabled"], "send", "kizuna-webhooks announces a disabled subscription.")

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Kizuna topics",
            "version": "1.0.0",
            "description": (
                "The Kafka topics of Kizuna's loyalty engine, contract kizuna.v1 (proto/kizuna/v1). "
                "Payloads are the protobuf JSON mapping by default; inputs may be binary protobuf or in "
                "Schema Registry framing, and outputs may be published in Schema Registry framing "
                "(outputs.format). "
                "Outputs follow the CloudEvents Kafka binding in binary mode: ce_* headers, with "
                "ce_dataschema naming the message. Topic names are the defaults "
                "(kafka.topics.*, kafka.topic_prefix); the payload schemas are generated from the protos "
                "by tests/contracts/asyncapi.py."
            ),
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The local stack (deploy/local/up.sh): Apache Kafka or tansu.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas(descriptor)},
    }


def render(doc):
    header = (
        "# Generated by tests/contracts/asyncapi.py from proto/ and the default configs.\n"
        "# Do not edit: run tests/contracts/check.sh --write.\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    descriptor = json.loads(Path(argv[1]).read_text())
    out = Path(argv[2])
    text = render(document(descriptor))
    if "--check" in argv[3:]:
        if not out.exists() or out.read_text() != text:
            print(
                f"{out} differs from the document generated from proto/: run tests/contracts/check.sh --write",
                file=sys.stderr,
            )
            return 1
        return 0
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
