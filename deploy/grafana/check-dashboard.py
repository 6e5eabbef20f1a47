#!/usr/bin/env python3
"""Checks deploy/grafana/kizuna-dashboard.json and the metric names of the alert rules.
Run by deploy/validate.sh (python3 standard library only).

- The dashboard is JSON with schemaVersion >= 36, a `DS_PROMETHEUS` template variable of type
  datasource (query prometheus), and every panel and target on datasource ${DS_PROMETHEUS}.
- Panel ids are unique, every panel has a gridPos inside the 24-column grid and no two panels
  of the same row overlap; the expected rows are present.
- Every metric name in a panel expression (and in alerts.yml) is one Kizuna exports (the list
  below, plus _bucket/_sum/_count of its histograms, and Prometheus' own `up`); every exported
  metric appears on the dashboard.
- Writes every panel expression, with Grafana's variables replaced, as a recording rule to
  --promql-out, for `promtool check rules` to parse (PromQL syntax).

Usage: check-dashboard.py DASHBOARD ALERTS_YML --promql-out FILE [--engine-src DIR]
"""
import argparse
import json
import re
import sys
from pathlib import Path

# The names Kizuna exposes on /metrics (issue 7). type: c counter, g gauge, h histogram.
METRICS = {
    "kizuna_events_consumed_total": "c", "kizuna_dead_letters_total": "c",
    "kizuna_batch_events": "h", "kizuna_batch_duration_seconds": "h", "kizuna_batch_failures_total": "c",
    "kizuna_event_processing_lag_seconds": "h", "kizuna_consumer_lag_messages": "g",
    "kizuna_outbox_backlog_rows": "g", "kizuna_outbox_oldest_age_seconds": "g",
    "kizuna_outbox_publish_latency_seconds": "h", "kizuna_outbox_published_total": "c",
    "kizuna_outputs_total": "c", "kizuna_tier_transitions_total": "c",
    "kizuna_churn_risk_changes_total": "c", "kizuna_segment_changes_total": "c",
    "kizuna_customers": "g", "kizuna_customers_by_segment": "g", "kizuna_customers_by_churn_level": "g",
    "kizuna_model_version": "g", "kizuna_model_fitted_timestamp_seconds": "g",
    "kizuna_swept_customers_total": "c", "kizuna_assigned_partitions": "g", "kizuna_ready": "g",
    "kizuna_db_pool_connections": "g", "kizuna_db_pool_max_connections": "g",
    "kizuna_http_request_duration_seconds": "h", "kizuna_build_info": "g",
}
# The process collector of the prometheus crate (Linux).
PROCESS = {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
           "process_open_fds", "process_max_fds", "process_start_time_seconds", "process_threads"}
PROMETHEUS_OWN = {"up"}
REQUIRED_ROWS = ["Throughput & outcomes", "Dead letters by reason", "Latency", "Consumer lag by partition",
                 "Outbox backlog & age", "Loyalty", "Churn model", "Health", "Build info"]
MUST_SHOW_PROCESS = {"process_cpu_seconds_total", "process_resident_memory_bytes"}

FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "count_over_time", "day_of_month", "day_of_week", "days_in_month", "delta", "deriv",
    "exp", "floor", "histogram_quantile", "histogram_count", "histogram_sum", "histogram_fraction",
    "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace", "last_over_time",
    "ln", "log10", "log2", "max_over_time", "min_over_time", "minute", "month", "predict_linear",
    "present_over_time", "quantile_over_time", "rate", "resets", "round", "scalar", "sgn", "sort",
    "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "time", "timestamp",
    "vector", "year", "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio", "label_values", "query_result",
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
            "bool", "offset", "inf", "nan", "atan2"}

problems = []


def fail(msg):
    problems.append(msg)
    print(f"  FAIL  {msg}")


def ok(msg):
    print(f"  ok    {msg}")


def allowed_name(name):
    if name in METRICS or name in PROCESS or name in PROMETHEUS_OWN:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base and METRICS.get(base) == "h":
            return base
    return None


def metric_names(expr):
    """Metric-name identifiers of a PromQL expression (no label names, functions, keywords)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                 # strings
    e = re.sub(r"\{[^}]*\}", "{}", e)                             # label matchers
    e = re.sub(r"\[[^\]]*\]", "[]", e)                            # ranges and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)  # label lists
    e = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", " ", e)         # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word in FUNCTIONS or word.lower() in KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]?", word):
            continue
        names.add(word)
    return names


def grafana_to_promql(expr):
    e = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    e = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".*", e)
    return e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dashboard")
    ap.add_argument("alerts")
    ap.add_argument("--promql-out", required=True)
    ap.add_argument("--engine-src")
    a = ap.parse_args()

    d = json.loads(Path(a.dashboard).read_text())
    ok(f"{a.dashboard}: valid JSON, {len(d.get('panels', []))} top-level panels")
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
        fail(f"schemaVersion {d.get('schemaVersion')} (expected >= 36)")
    for key in ("title", "uid", "panels", "templating"):
        if key not in d:
            fail(f"dashboard has no {key}")
    tvars = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
    ds = tvars.get("DS_PROMETHEUS")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        fail("template variable DS_PROMETHEUS must be of type datasource with query prometheus")
    else:
        ok("template variable DS_PROMETHEUS: a prometheus data source")
    for name, v in tvars.items():
        if v.get("type") == "query" and v.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            fail(f"template variable {name}: datasource must be ${{DS_PROMETHEUS}}")

    panels, rows = [], []
    for p in d.get("panels", []):
        if p.get("type") == "row":
            rows.append(p)
            panels += p.get("panels", [])
        else:
            panels.append(p)
    row_titles = [r.get("title") for r in rows]
    missing = [t for t in REQUIRED_ROWS if t not in row_titles]
    if missing:
        fail(f"rows missing: {missing}")
    else:
        ok(f"rows: {', '.join(row_titles)}")

    ids = [p.get("id") for p in d["panels"]] + [p.get("id") for r in rows for p in r.get("panels", [])]
    if len(ids) != len(set(ids)) or None in ids:
        fail(f"panel ids must be unique and present: {ids}")
    cells = {}
    for p in d["panels"]:
        g = p.get("gridPos")
        if not g or not all(k in g for k in "hwxy"):
            fail(f"panel {p.get('id')} {p.get('title')!r}: gridPos needs h, w, x, y")
            continue
        if g["x"] < 0 or g["w"] < 1 or g["x"] + g["w"] > 24:
            fail(f"panel {p.get('id')} {p.get('title')!r}: outside the 24-column grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    fail(f"panels {cells[(x, y)]} and {p.get('title')!r} overlap at x={x} y={y}")
                    break
                cells[(x, y)] = p.get("title")
            else:
                continue
            break
    ok(f"{len(ids)} unique panel ids; grid positions inside 24 columns, no overlap")

    used, exprs = set(), []
    for p in panels:
        if p.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            fail(f"panel {p.get('title')!r}: datasource must be ${{DS_PROMETHEUS}}")
        if not p.get("targets"):
            fail(f"panel {p.get('title')!r}: no query")
        refs = [t.get("refId") for t in p.get("targets", [])]
        if len(refs) != len(set(refs)):
            fail(f"panel {p.get('title')!r}: duplicate refIds {refs}")
        for t in p.get("targets", []):
            if t.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
                fail(f"panel {p.get('title')!r} target {t.get('refId')}: datasource must be ${{DS_PROMETHEUS}}")
            expr = t.get("expr", "")
            if not expr.strip():
                fail(f"panel {p.get('title')!r} target {t.get('refId')}: empty expr")
                continue
            exprs.append((p["id"], t["refId"], p.get("title"), expr))
            for name in metric_names(expr):
                base = allowed_name(name)
                if not base:
                    fail(f"panel {p.get('title')!r}: {name!r} is not a metric Kizuna exports")
                else:
                    used.add(base)
    for v in tvars.values():
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and q:
            for name in re.findall(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)", q):
                if not allowed_name(name):
                    fail(f"template variable {v['name']}: {name!r} is not a metric Kizuna exports")
    ok(f"{len(exprs)} panel expressions, metric names all in Kizuna's list")
    unshown = sorted(set(METRICS) - used)
    if unshown:
        fail(f"metrics not on the dashboard: {unshown}")
    if MUST_SHOW_PROCESS - used:
        fail(f"process metrics not on the dashboard: {sorted(MUST_SHOW_PROCESS - used)}")
    if not unshown:
        ok(f"all {len(METRICS)} kizuna_* metrics are on the dashboard, and process CPU/RSS")

    # Alert rules: metric names too.
    text = Path(a.alerts).read_text()
    alert_exprs = re.findall(r"expr:\s*(\|[\s\S]*?)(?=\n\s+for:|\n\s+labels:)|expr:\s*(.+)", text)
    n = 0
    for block, line in alert_exprs:
        expr = block[1:] if block else line
        n += 1
        for name in metric_names(expr):
            if not allowed_name(name):
                fail(f"alerts.yml: {name!r} is not a metric Kizuna exports (in {expr.strip()[:80]!r})")
    ok(f"alerts.yml: metric names of {n} expressions all in Kizuna's list")

    # PromQL syntax: as recording rules for promtool.
    with open(a.promql_out, "w") as f:
        f.write("# Generated by deploy/grafana/check-dashboard.py: every dashboard expression, for promtool.\n")
        f.write("groups:\n  - name: dashboard\n    rules:\n")
        for pid, ref, title, expr in exprs:
            f.write(f"      - record: dashboard:panel_{pid}_{ref}\n")
            f.write(f"        expr: {json.dumps(grafana_to_promql(expr))}\n")
    ok(f"wrote {len(exprs)} expressions to {a.promql_out} for promtool")

    if a.engine_src:
        src = "\n".join(p.read_text() for p in Path(a.engine_src).rglob("*.rs"))
        absent = sorted(m for m in METRICS if f'"{m}"' not in src)
        if absent:
            print(f"  note  not (yet) registered in {a.engine_src}: {', '.join(absent)} "
                  "(panels stay empty until the engine exports them)")
        else:
            print(f"  note  every metric is registered in {a.engine_src}")
    print(f"  {len(problems)} failure(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
