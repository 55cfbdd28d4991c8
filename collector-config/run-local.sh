#!/usr/bin/env bash
# The local fleet for a tryout: Alertmanager, Prometheus and the demo collectors
# (examples/fleet_demo.py), all on loopback, with the files of this folder used
# as they are. Ctrl-C stops everything. `make fleet` runs it.
#
# Needs Debian's (or your distribution's) prometheus and prometheus-alertmanager
# binaries, and the project's Python environment with the apscheduler and
# prometheus extras (`make fleet` builds it). Set FLEET_SECONDS to stop by
# itself, FLEET_DATA for where data and logs go (default: .fleet/).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-$root/.venv/bin/python}"
data="${FLEET_DATA:-$root/.fleet}"

fail() { echo "run-local.sh: $*" >&2; exit 2; }
command -v prometheus >/dev/null 2>&1 \
    || fail "prometheus is not installed (Debian or Ubuntu: sudo apt-get install prometheus)"
alertmanager="$(command -v prometheus-alertmanager || command -v alertmanager || true)"
[ -n "$alertmanager" ] \
    || fail "alertmanager is not installed (Debian or Ubuntu: sudo apt-get install prometheus-alertmanager)"
for port in 9090 9093 9465; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        fail "127.0.0.1:$port is in use: stop what listens there (a packaged prometheus service?) and try again"
    fi
done
mkdir -p "$data"

pids=()
stop() {
    trap - INT TERM EXIT
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    echo "fleet stopped; logs and data are in $data"
}
trap stop INT TERM EXIT

"$alertmanager" --config.file="$here/alertmanager/alertmanager.yml" \
    --storage.path="$data/alertmanager" --web.listen-address=127.0.0.1:9093 \
    --cluster.listen-address= >"$data/alertmanager.log" 2>&1 &
pids+=($!)
prometheus --config.file="$here/prometheus/prometheus.yml" \
    --storage.tsdb.path="$data/prometheus" --web.listen-address=127.0.0.1:9090 \
    >"$data/prometheus.log" 2>&1 &
pids+=($!)
"$python" "$root/examples/fleet_demo.py" --database "sqlite:///$data/fleet.db" \
    ${FLEET_SECONDS:+--seconds "$FLEET_SECONDS"} &
demo=$!
pids+=("$demo")

cat <<MSG
The local fleet is up (Ctrl-C stops it):
  status page     http://127.0.0.1:9465/          the demo process, live
  metrics         http://127.0.0.1:9465/metrics   what Prometheus scrapes
  Prometheus      http://127.0.0.1:9090/alerts    the rules of prometheus/gecko-otel.rules.yml
  Alertmanager    http://127.0.0.1:9093/          alerts from Prometheus and from the process, one group per collector
  command line    $root/.venv/bin/gecko-otel status $data/fleet.db
Within a minute ohlcv_collector fails three times in a row (consecutive_failures,
from both sources, in one Alertmanager group); trade_collector outlasts its
interval (overlap), and a pause of the scheduler every 40 s makes runs missed.
Grafana is not started here: see docs/deployment.md to provision grafana/.
MSG
wait "$demo"
