#!/usr/bin/env bash
# serve/metrics tests start their own Prometheus and node_exporter on 127.0.0.1 port 0.
# Installing Debian's packages may also start their system services, listening on every
# interface (9090, 9100): stop those, which the tests neither need nor want. Idempotent.
set -euo pipefail
for service in prometheus prometheus-node-exporter; do
    # -f: a process name is cut at 15 characters ("prometheus-node").
    if pgrep -f "^(/usr/bin/)?$service( |$)" >/dev/null 2>&1; then
        echo "stopping the system's $service (the tests run their own)"
        if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
            systemctl stop "$service" || true
        elif [ -x "/etc/init.d/$service" ]; then
            "/etc/init.d/$service" stop || true
        fi
    fi
done
for program in prometheus promtool prometheus-node-exporter /usr/lib/chromium/chromium; do
    command -v "$program" >/dev/null || { echo "40-serve: $program is missing" >&2; exit 1; }
done
