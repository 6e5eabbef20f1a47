#!/usr/bin/env python3
"""Validates Kizuna's Kubernetes manifests offline. Run by deploy/validate.sh in its tool venv.

1. Built-in kinds: kubernetes-validate (the Kubernetes OpenAPI schemas shipped in its wheel),
   strict mode (unknown fields are errors), against each --versions Kubernetes version.
2. CRDs (KEDA ScaledObject/TriggerAuthentication, Prometheus Operator ServiceMonitor/
   PrometheusRule): the JSON schemas in deploy/k8s/schemas/. An unknown kind is an error.
3. Cross-checks the schemas cannot express: references between objects (Secrets, keys,
   ConfigMaps, Service/PDB/ServiceMonitor selectors, ports, the KEDA target), the engine's
   probes, security context and drain time, KEDA against kizuna.toml (group, topics,
   partitions, brokers), kizuna.toml keys against the engine's default.toml, the programme
   copy against the built-in one, the PrometheusRule against deploy/prometheus/alerts.yml.

Usage: check-manifests.py --repo ROOT --versions 1.29.0,1.37.0 --rendered FILE... \
           --standalone FILE...
       check-manifests.py --repo ROOT --regen    (rewrites the two derived files, see regen())
"""
import argparse
import copy
import json
import re
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv

CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication-keda-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
}
CLUSTER_SCOPED = {"Namespace"}

failures = []
notes = []


def fail(msg):
    failures.append(msg)
    print(f"  FAIL  {msg}")


def ok(msg):
    print(f"  ok    {msg}")


def note(msg):
    notes.append(msg)
    print(f"  note  {msg}")


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def name_of(d):
    return f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"


def flatten(tree, prefix=""):
    out = set()
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= flatten(v, key + ".")
        else:
            out.add(key)
    return out


def default_keys(default_toml: Path):
    """Keys of default.toml, including the documented commented-out ones (`# key = …`)."""
    text = default_toml.read_text()
    keys = flatten(tomllib.loads(text))
    section = ""
    for line in text.splitlines():
        m = re.match(r"^\[([a-z_.]+)\]", line)
        if m:
            section = m.group(1) + "."
            continue
        m = re.match(r"^#\s*([a-z_]+)\s*=", line)
        if m:
            keys.add(section + m.group(1))
    return keys


def check_config_keys(label, cfg, allowed):
    unknown = []
    for k in flatten(cfg):
        if k.startswith(("kafka.properties.", "kafka.secret_properties.")):
            continue
        if k not in allowed:
            unknown.append(k)
    # properties / secret_properties values are strings
    if unknown:
        fail(f"{label}: keys unknown to the engine's default.toml: {', '.join(sorted(unknown))}")
    else:
        ok(f"{label}: every key is one the engine knows (default.toml)")


def pod_spec(d):
    kind = d["kind"]
    if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return d["spec"]["template"]["spec"]
    if kind == "CronJob":
        return d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def pod_labels(d):
    if d["kind"] == "CronJob":
        return d["spec"]["jobTemplate"]["spec"]["template"].get("metadata", {}).get("labels", {})
    return d["spec"]["template"].get("metadata", {}).get("labels", {})


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--versions", default="1.37.0")
    ap.add_argument("--rendered", nargs="*", default=[])
    ap.add_argument("--standalone", nargs="*", default=[])
    ap.add_argument("--regen", action="store_true",
                    help="only regenerate monitoring/prometheusrule.yaml and configmap.yaml's programme.toml")
    a = ap.parse_args()
    repo = Path(a.repo)
    k8s = repo / "deploy" / "k8s"
    versions = a.versions.split(",")

    if a.regen:
        regen(repo)
        return 0

    rendered = []
    for p in a.rendered:
        rendered += [(p, d) for d in load_docs(p)]
    standalone = []
    for p in a.standalone:
        standalone += [(p, d) for d in load_docs(p)]
    everything = rendered + standalone
    print(f"  {len(rendered)} rendered objects, {len(standalone)} standalone objects; "
          f"kubernetes-validate {kubernetes_validate.__version__}, Kubernetes {', '.join(versions)} (strict)")

    # ---- 1 + 2: schemas
    for path, d in everything:
        for key in ("apiVersion", "kind"):
            if key not in d:
                fail(f"{path}: an object without {key}")
        if "metadata" not in d or "name" not in d["metadata"]:
            fail(f"{path}: {d.get('kind')} without metadata.name")
            continue
        ident = (d["apiVersion"], d["kind"])
        if ident in CRD_SCHEMAS:
            schema = json.loads((k8s / "schemas" / CRD_SCHEMAS[ident]).read_text())
            errs = sorted(jsonschema.Draft202012Validator(schema).iter_errors(d), key=lambda e: list(e.path))
            if errs:
                for e in errs:
                    fail(f"{name_of(d)} ({Path(path).name}): {'/'.join(map(str, e.path))}: {e.message}")
            else:
                ok(f"{name_of(d)}: CRD schema deploy/k8s/schemas/{CRD_SCHEMAS[ident]}")
            continue
        bad = False
        for v in versions:
            try:
                kv.validate(d, v, strict=True)
            except kv.SchemaNotFoundError as e:
                fail(f"{name_of(d)}: no schema: {e.message}")
                bad = True
                break
            except kv.ValidationError as e:
                fail(f"{name_of(d)} ({Path(path).name}), Kubernetes {v}: "
                     f"{'.'.join(map(str, e.path))}: {e.message}")
                bad = True
        if not bad:
            ok(f"{name_of(d)}: Kubernetes schema {'/'.join(versions)} strict")

    # ---- 3: cross-checks
    by_kind = {}
    for _, d in rendered:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    secrets = {}
    for _, d in standalone:
        if d.get("kind") == "Secret":
            secrets[d["metadata"]["name"]] = set((d.get("stringData") or {}).keys()) | set((d.get("data") or {}).keys())
    for _, d in rendered:
        if d["kind"] == "Secret":
            fail(f"{name_of(d)}: a Secret in the kustomization would overwrite the real one; keep it in secret.example.yaml")

    for _, d in rendered:
        if d["kind"] not in CLUSTER_SCOPED and d["metadata"].get("namespace") != "kizuna":
            fail(f"{name_of(d)}: namespace {d['metadata'].get('namespace')!r}, expected 'kizuna'")

    cm = by_kind.get("ConfigMap", {}).get("kizuna-config")
    kcfg = {}
    allowed = default_keys(repo / "services/loyalty-engine/config/default.toml")
    if not cm:
        fail("ConfigMap kizuna-config missing from the kustomization")
    else:
        try:
            kcfg = tomllib.loads(cm["data"]["kizuna.toml"])
            ok("ConfigMap kizuna-config: kizuna.toml parses (TOML)")
        except Exception as e:  # noqa: BLE001
            fail(f"ConfigMap kizuna-config: kizuna.toml: {e}")
        check_config_keys("ConfigMap kizuna-config kizuna.toml", kcfg, allowed)
        if kcfg.get("database", {}).get("migrate_on_start") is not False:
            fail("ConfigMap kizuna.toml: database.migrate_on_start must be false (the runtime role cannot migrate)")
        for forbidden in ("url", "admin_token"):
            if forbidden in kcfg.get("database", {}) or forbidden in kcfg.get("http", {}):
                fail(f"ConfigMap kizuna.toml holds a secret ({forbidden}); it belongs in the Secret")
        if kcfg.get("kafka", {}).get("secret_properties"):
            fail("ConfigMap kizuna.toml holds [kafka.secret_properties]; it belongs in Secret kizuna-kafka")
        try:
            prog = cm["data"]["programme.toml"]
            tomllib.loads(prog)
            ok("ConfigMap kizuna-config: programme.toml parses (TOML)")
            builtin = (repo / "services/loyalty-engine/config/programme.toml").read_text()
            if prog == builtin:
                ok("ConfigMap programme.toml is the built-in programme (services/loyalty-engine/config/programme.toml)")
            else:
                note("ConfigMap programme.toml differs from services/loyalty-engine/config/programme.toml "
                     "(fine if intended: it is the deployment's programme; `deploy/validate.sh --regen` copies the built-in one)")
        except Exception as e:  # noqa: BLE001
            fail(f"ConfigMap kizuna-config: programme.toml: {e}")
    compose_toml = repo / "deploy/compose/kizuna.toml"
    check_config_keys("deploy/compose/kizuna.toml", tomllib.loads(compose_toml.read_text()), allowed)

    kafka = {**tomllib.loads((repo / "services/loyalty-engine/config/default.toml").read_text())["kafka"],
             **kcfg.get("kafka", {})}
    topics = {**tomllib.loads((repo / "services/loyalty-engine/config/default.toml").read_text())["kafka"]["topics"],
              **kcfg.get("kafka", {}).get("topics", {})}
    inputs = {topics["purchases"], topics["support_tickets"], topics["surveys"]}
    session_s = kafka["session_timeout_ms"] / 1000

    configmaps = set(by_kind.get("ConfigMap", {}))
    sas = set(by_kind.get("ServiceAccount", {}))
    for _, d in rendered:
        spec = pod_spec(d)
        if spec is None:
            continue
        label = name_of(d)
        if spec.get("serviceAccountName") and spec["serviceAccountName"] not in sas:
            fail(f"{label}: ServiceAccount {spec['serviceAccountName']} not in the kustomization")
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            fail(f"{label}: pod securityContext.runAsNonRoot is not true")
        for vol in spec.get("volumes", []):
            if "configMap" in vol and vol["configMap"]["name"] not in configmaps:
                fail(f"{label}: volume {vol['name']}: ConfigMap {vol['configMap']['name']} not in the kustomization")
            if "secret" in vol and vol["secret"]["secretName"] not in secrets:
                fail(f"{label}: volume {vol['name']}: Secret {vol['secret']['secretName']} not in secret.example.yaml")
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            sc = c.get("securityContext", {})
            if not (sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
                    and "ALL" in sc.get("capabilities", {}).get("drop", [])):
                fail(f"{label}/{c['name']}: securityContext must set readOnlyRootFilesystem, "
                     "allowPrivilegeEscalation: false, capabilities.drop [ALL]")
            res = c.get("resources", {})
            if not res.get("requests") or "memory" not in res.get("limits", {}):
                fail(f"{label}/{c['name']}: resources need requests and a memory limit")
            vol_names = {v["name"] for v in spec.get("volumes", [])}
            for m in c.get("volumeMounts", []):
                if m["name"] not in vol_names:
                    fail(f"{label}/{c['name']}: volumeMount {m['name']} has no volume")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    if ref["name"] not in secrets:
                        fail(f"{label}/{c['name']}: env {e['name']}: Secret {ref['name']} not in secret.example.yaml")
                    elif ref["key"] not in secrets[ref["name"]]:
                        fail(f"{label}/{c['name']}: env {e['name']}: key {ref['key']} not in Secret {ref['name']} of secret.example.yaml")
        ok(f"{label}: references (ConfigMaps, Secrets and keys, ServiceAccount, volumes), non-root, read-only root, no capabilities, resources")

    dep = by_kind.get("Deployment", {}).get("kizuna")
    if not dep:
        fail("Deployment kizuna missing")
    else:
        spec = pod_spec(dep)
        c = next(c for c in spec["containers"] if c["name"] == "kizuna")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        env = {e["name"]: e for e in c.get("env", [])}
        if dep["spec"].get("replicas", 1) < 2:
            fail("Deployment kizuna: fewer than 2 replicas")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            p = c.get(probe, {}).get("httpGet", {})
            if p.get("path") != path or p.get("port") not in ports:
                fail(f"Deployment kizuna: {probe} must GET {path} on a declared port (has {p})")
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if grace <= session_s:
            fail(f"Deployment kizuna: terminationGracePeriodSeconds {grace} must exceed the graceful drain "
                 f"(bounded by kafka.session_timeout_ms = {session_s:.0f} s)")
        if env.get("KIZUNA_DATABASE__MIGRATE_ON_START", {}).get("value") != "false":
            fail("Deployment kizuna: KIZUNA_DATABASE__MIGRATE_ON_START must be \"false\"")
        url = env.get("KIZUNA_DATABASE__URL", {}).get("valueFrom", {}).get("secretKeyRef", {})
        if url.get("name") != "kizuna-runtime":
            fail(f"Deployment kizuna: KIZUNA_DATABASE__URL must come from Secret kizuna-runtime (the runtime role), not {url.get('name')}")
        bind = env.get("KIZUNA_HTTP__BIND", {}).get("value") or kcfg.get("http", {}).get("bind", "")
        if not bind.startswith("0.0.0.0:") or int(bind.rsplit(":", 1)[1]) not in ports.values():
            fail(f"Deployment kizuna: http.bind {bind!r} must listen on 0.0.0.0 on the container port")
        ok(f"Deployment kizuna: {dep['spec'].get('replicas')} replicas, probes /healthz and /readyz, "
           f"grace {grace} s > drain bound {session_s:.0f} s, runtime role, migrate_on_start=false, bind {bind}")

        labels = pod_labels(dep)
        svc = by_kind.get("Service", {}).get("kizuna")
        if not svc or not selects(svc["spec"].get("selector"), labels):
            fail("Service kizuna does not select the Deployment's pods")
        else:
            for p in svc["spec"]["ports"]:
                tp = p.get("targetPort")
                if isinstance(tp, str) and tp not in ports:
                    fail(f"Service kizuna: targetPort {tp} is not a container port")
            ok("Service kizuna selects the engine pods; its targetPort is the container port")
        pdb = by_kind.get("PodDisruptionBudget", {}).get("kizuna")
        if not pdb or not selects(pdb["spec"]["selector"].get("matchLabels"), labels):
            fail("PodDisruptionBudget kizuna does not select the Deployment's pods")
        elif pdb["spec"].get("minAvailable") != 1:
            fail("PodDisruptionBudget kizuna: minAvailable must be 1")
        else:
            ok("PodDisruptionBudget kizuna: minAvailable 1, selects the engine pods")

        so = by_kind.get("ScaledObject", {}).get("kizuna")
        if not so:
            fail("ScaledObject kizuna missing")
        else:
            s = so["spec"]
            if s["scaleTargetRef"]["name"] != "kizuna" or s["scaleTargetRef"].get("kind", "Deployment") != "Deployment":
                fail("ScaledObject: scaleTargetRef must be Deployment kizuna")
            lo, hi = s.get("minReplicaCount", 0), s.get("maxReplicaCount", 100)
            if not (1 <= lo <= hi <= kafka["partitions"]):
                fail(f"ScaledObject: need 1 <= minReplicaCount ({lo}) <= maxReplicaCount ({hi}) <= kafka.partitions ({kafka['partitions']})")
            seen = set()
            for t in s["triggers"]:
                if t["type"] != "kafka":
                    continue
                m = t["metadata"]
                if m.get("consumerGroup") != kafka["group_id"]:
                    fail(f"ScaledObject trigger {t.get('name')}: consumerGroup {m.get('consumerGroup')} != kafka.group_id {kafka['group_id']}")
                if m.get("bootstrapServers") != kafka["brokers"]:
                    fail(f"ScaledObject trigger {t.get('name')}: bootstrapServers {m.get('bootstrapServers')} != kafka.brokers {kafka['brokers']}")
                if m.get("topic") not in inputs:
                    fail(f"ScaledObject trigger {t.get('name')}: topic {m.get('topic')} is not an input topic {sorted(inputs)}")
                seen.add(m.get("topic"))
            if seen != inputs:
                fail(f"ScaledObject: no lag trigger for {sorted(inputs - seen)}")
            ok(f"ScaledObject kizuna: Deployment kizuna, {lo}..{hi} replicas <= {kafka['partitions']} partitions, "
               f"group {kafka['group_id']}, topics {', '.join(sorted(seen))}, brokers as kizuna.toml")
            for _, d in standalone:
                if d.get("kind") == "TriggerAuthentication":
                    for r in d["spec"].get("secretTargetRef", []):
                        if r["name"] not in secrets or r["key"] not in secrets[r["name"]]:
                            fail(f"{name_of(d)}: Secret {r['name']} key {r['key']} not in secret.example.yaml")

    mig = by_kind.get("Job", {}).get("kizuna-migrate")
    if not mig:
        fail("Job kizuna-migrate missing")
    else:
        c = pod_spec(mig)["containers"][0]
        env = {e["name"]: e for e in c.get("env", [])}
        if c.get("args") != ["migrate"] or env["KIZUNA_DATABASE__URL"]["valueFrom"]["secretKeyRef"]["name"] != "kizuna-migrator":
            fail("Job kizuna-migrate must run `kizuna migrate` with Secret kizuna-migrator (the owner role)")
        else:
            ok("Job kizuna-migrate: `kizuna migrate` as the migration owner (Secret kizuna-migrator)")

    for _, d in rendered:
        if d["kind"] == "ServiceMonitor":
            svc = by_kind.get("Service", {}).get("kizuna")
            sel = d["spec"]["selector"].get("matchLabels", {})
            if svc is None:
                # rendered separately (monitoring kustomization): check against the base Service file
                svc = next(x for x in load_docs(k8s / "service.yaml"))
            if not selects(sel, svc["metadata"].get("labels", {})):
                fail("ServiceMonitor kizuna does not select Service kizuna's labels")
            port_names = {p["name"] for p in svc["spec"]["ports"]}
            for ep in d["spec"]["endpoints"]:
                if ep.get("port") not in port_names:
                    fail(f"ServiceMonitor: endpoint port {ep.get('port')} is not a port of Service kizuna")
            ok("ServiceMonitor kizuna selects Service kizuna and its http port")
        if d["kind"] == "PrometheusRule":
            alerts = yaml.safe_load((repo / "deploy/prometheus/alerts.yml").read_text())
            if d["spec"]["groups"] != alerts["groups"]:
                fail("PrometheusRule kizuna differs from deploy/prometheus/alerts.yml: run deploy/validate.sh --regen")
            else:
                ok("PrometheusRule kizuna: same groups as deploy/prometheus/alerts.yml")

    print(f"  {len(failures)} failure(s), {len(notes)} note(s)")
    return 1 if failures else 0


class _Literal(str):
    pass


def _literal(dumper, data):
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")


def regen(repo):
    src = repo / "deploy/prometheus/alerts.yml"
    dst = repo / "deploy/k8s/monitoring/prometheusrule.yaml"
    groups = copy.deepcopy(yaml.safe_load(src.read_text())["groups"])
    for g in groups:
        for r in g["rules"]:
            if "\n" in r["expr"]:
                r["expr"] = _Literal(r["expr"])
    yaml.add_representer(_Literal, _literal, Dumper=yaml.SafeDumper)
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "kizuna", "labels": {"app.kubernetes.io/name": "kizuna",
                                                  "app.kubernetes.io/part-of": "kizuna"}},
        "spec": {"groups": groups},
    }
    body = yaml.safe_dump(doc, sort_keys=False, width=200, allow_unicode=True)
    dst.write_text("# GENERATED from deploy/prometheus/alerts.yml by `deploy/validate.sh --regen`: edit alerts.yml,\n"
                   "# not this file. Needs the Prometheus Operator; your Prometheus may select rules by a label\n"
                   "# (e.g. release: kube-prometheus-stack): add it to metadata.labels.\n" + body)
    print(f"  regenerated {dst.relative_to(repo)} from {src.relative_to(repo)}")

    cm_path = repo / "deploy/k8s/configmap.yaml"
    builtin = (repo / "services/loyalty-engine/config/programme.toml").read_text()
    text = cm_path.read_text()
    marker = "  programme.toml: |\n"
    head = text[: text.index(marker) + len(marker)]
    body = "".join(("    " + line) if line.strip() else "\n" for line in builtin.splitlines(keepends=True))
    cm_path.write_text(head + body)
    print(f"  regenerated programme.toml of {cm_path.relative_to(repo)} from services/loyalty-engine/config/programme.toml")


if __name__ == "__main__":
    sys.exit(main())
