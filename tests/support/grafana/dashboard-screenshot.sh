#!/usr/bin/env bash
# Regenerates docs/images/dashboard.png from real data, end to end: the example scenario
# of examples/either (procedure C) with its CRL source enabled runs on free loopback ports
# (slapd with the example users, smtp-sink as the next hop, the CRL served over HTTP, one
# postern-gateway), a real Prometheus scrapes the gateway while real SMTP clients (swaks)
# send mail, fail and get refused for a few minutes, and render-dashboard.py then draws the
# chart's dashboard from that Prometheus. Everything started here is stopped at the end.
# Usage: tests/support/grafana/dashboard-screenshot.sh [SECONDS [OUT.png]]
# Needs the built binaries (cargo build -p postern-gateway -p postern-controller; set
# CARGO_TARGET_DIR if the target dir is elsewhere) and tests/support/install-deps.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
duration=${1:-240}
out=${2:-$repo/docs/images/dashboard.png}
bin=${CARGO_TARGET_DIR:-$repo/target}/debug
pki=$repo/examples/pki
export PATH=$HOME/.local/bin:$PATH:/usr/sbin
py=/usr/bin/python3 # Debian's, which has python3-matplotlib

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# Seven distinct free ports, chosen while all of them are held so none repeats.
read -r smtp ldap dead sink crl admin prom < <("$py" -c '
import socket
ss = [socket.socket() for _ in range(7)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')

wait_port() { # PORT: until something listens there (30 s at most)
  for _ in $(seq 300); do (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done
  echo "dashboard-screenshot: nothing listens on port $1 (logs: $work)" >&2; exit 1
}

# The example manifests on these ports. The LDAP profile gets a first server on a closed
# port so the failover panel has something to show, and the CRL is fetched every minute.
mkdir "$work/manifests"
cp "$repo"/examples/either/*.yaml "$work/manifests/"
sed -i "s/port: 2589/port: $smtp/; s/port: 2525/port: $sink/" "$work/manifests/listener.yaml"
sed -i "s#- url: ldap://127.0.0.1:3389.*#- url: ldap://127.0.0.1:$dead\n    - url: ldap://127.0.0.1:$ldap#" \
  "$work/manifests/ldap-profile.yaml"
sed "s/enabled: false/enabled: true/; s/8480/$crl/g; s/interval: 1h/interval: 1m/" \
  "$repo/examples/certificate-only/crl-source.yaml" >"$work/manifests/crl-source.yaml"
"$bin/postern" render -f "$work/manifests" -o "$work/gateway.yaml" >"$work/render.log" 2>&1 ||
  { cat "$work/render.log" >&2; exit 1; }

"$repo/examples/ldap/run-slapd.sh" "$ldap" 2>"$work/slapd.log" & pids+=($!)
smtp-sink -u nobody "127.0.0.1:$sink" 100 2>"$work/sink.log" & pids+=($!)
"$py" -m http.server --bind 127.0.0.1 --directory "$pki" "$crl" >"$work/crl.log" 2>&1 & pids+=($!)
wait_port "$ldap"; wait_port "$sink"; wait_port "$crl"
"$bin/postern-gateway" --config "$work/gateway.yaml" --admin-address "127.0.0.1:$admin" \
  >"$work/gateway.log" 2>&1 & pids+=($!)
# namespace and pod: the target labels the chart's ServiceMonitor adds in a cluster.
cat >"$work/prometheus.yml" <<YML
global: {scrape_interval: 5s}
scrape_configs:
  - job_name: postern-gateway
    static_configs:
      - targets: ["127.0.0.1:$admin"]
        labels: {namespace: mail, pod: postern-gateway-0}
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom" >"$work/prometheus.log" 2>&1 & pids+=($!)
wait_port "$smtp"; wait_port "$prom"

# One SMTP session: swaks from a loopback address of its own (the AUTH throttle counts per
# client address, so the password guesser is throttled and the other users are not).
send() { # FROM-ADDRESS USER ARGS...
  local addr=$1 user=$2; shift 2
  swaks --server "127.0.0.1:$smtp" --local-interface "$addr" --timeout 15 --helo client.test \
    --from "$user@example.org" --to someone@example.net "$@" >/dev/null 2>&1 || true
}
tls=(--tls --tls-ca-path "$pki/ca.crt")
cert() { send "$1" "$2" "${tls[@]}" --tls-cert "$pki/$2.crt" --tls-key "$pki/$2.key"; }
auth() { send "$1" "$2" "${tls[@]}" --auth PLAIN --auth-user "$2" --auth-password "$3"; }
one_session() { # a weighted mix: mostly mail that goes through, some of each refusal
  case $((RANDOM % 12)) in
    0 | 1 | 2) cert 127.0.0.11 alice ;;              # certificate: relayed
    3 | 4) auth 127.0.0.12 bob bob-pw ;;              # AUTH, no CAC: relayed
    5) auth 127.0.0.13 dave dave-pw ;;                # CAC exempt: relayed
    6) auth 127.0.0.14 carol carol-pw ;;              # CAC holder: 525 allowance
    7) auth 127.0.0.66 admin guess$RANDOM ;;          # guessing: 535, then throttled
    8) cert 127.0.0.15 mallory ;;                     # valid certificate, no directory entry
    9) cert 127.0.0.16 revoked ;;                     # listed in the CRL
    10) send 127.0.0.17 nobody ;;                     # no TLS, no AUTH: refused
    11) auth 127.0.0.18 frank frank-pw ;;             # emergency period over: 525
  esac
}

echo "dashboard-screenshot: traffic for ${duration}s (gateway 127.0.0.1:$smtp, Prometheus 127.0.0.1:$prom)" >&2
start=$(date +%s)
end=$((start + duration))
# Half way, a broken edit saved twice (refused both times: the configuration in force
# keeps serving), then a good one: the reload and generation panels show both. Twice,
# because the refused series appears only with its first refusal, at 1, which
# increase() cannot see.
(
  sleep $((duration / 2))
  cp "$work/gateway.yaml" "$work/good.yaml"
  for broken in "listeners: [" "listeners: {"; do
    echo "$broken" >"$work/bad.yaml" && mv "$work/bad.yaml" "$work/gateway.yaml"
    sleep 20
  done
  sed 's/maxRecipients: 100/maxRecipients: 50/' "$work/good.yaml" >"$work/next.yaml"
  mv "$work/next.yaml" "$work/gateway.yaml"
) & pids+=($!)
for _ in 1 2 3; do # three clients at a time
  (while [ "$(date +%s)" -lt "$end" ]; do one_session; sleep 0.$((RANDOM % 5)); done) & pids+=($!)
done
while [ "$(date +%s)" -lt "$end" ]; do sleep 1; done
sleep 12 # two more scrapes after the last session

helm template postern "$repo/charts/postern" --set metrics.grafanaDashboard.enabled=true \
  >"$work/chart.yaml"
mkdir -p "$(dirname "$out")"
"$py" "$here/render-dashboard.py" --dashboard "$work/chart.yaml" \
  --prometheus "http://127.0.0.1:$prom" --start "$start" --end "$(date +%s)" \
  --scrape-interval 5 --out "$out"
echo "dashboard-screenshot: wrote $out" >&2
