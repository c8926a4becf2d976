#!/usr/bin/env bash
# The compose demo: bring up examples/demo/hypr-compose.yml on a running hyprd and show it working.
# Expects HYPR_RUNTIME_DIR (the daemon's socket) and, as NS, the network namespace the daemon runs in (the host's
# own when unset), so that `curl localhost:8080` is run where the port is published.
# Usage: examples/demo.sh [up|down]      (up again is harmless: an unchanged stack is left as it is)
set -euo pipefail
cd "$(dirname "$0")/.."
HYPR=${HYPR:-.venv/bin/hypr}
NS=${NS:-}
COMPOSE=("$HYPR" compose -f examples/demo/hypr-compose.yml)
in_ns() { if [ -n "$NS" ]; then nsenter --net="/run/netns/$NS" "$@"; else "$@"; fi; }
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

case "${1:-up}" in
    up)
        step "${COMPOSE[@]}" --progress plain up -d
        step "${COMPOSE[@]}" ps
        step "$HYPR" network ls
        step "$HYPR" network inspect demo_backend
        printf '\n\033[1m$ curl localhost:8080\033[0m   (web -> api -> db, by service names)\n'
        ok=""
        for _ in $(seq 50); do  # httpd may still be binding: poll until a deadline of ~5 s
            if in_ns curl -sS --max-time 3 http://localhost:8080/; then ok=1; break; fi
            sleep 0.1
        done
        [ -n "$ok" ] || { echo "web did not answer on localhost:8080"; exit 1; }
        probe="printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 db 5432"
        printf '\n\033[1m$ hypr exec demo-web-1 sh -c "%s"\033[0m   (web -> db: refused)\n' "$probe"
        if "$HYPR" exec demo-web-1 sh -c "$probe"; then echo "UNEXPECTED: web reached db"; exit 1; fi
        echo "-> web cannot reach db: db is only on the internal backend network"
        probe="printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 172.30.1.10 5432"
        printf '\n\033[1m$ hypr exec demo-web-1 sh -c "%s"\033[0m   (web -> db by address)\n' "$probe"
        if "$HYPR" exec demo-web-1 sh -c "$probe"; then echo "UNEXPECTED: web reached db"; exit 1; fi
        echo "-> no answer: the firewall isolates frontend from backend"
        printf '\nTear down the stack with: %s down\n' "${COMPOSE[*]}"
        ;;
    down) step "${COMPOSE[@]}" --progress plain down ;;
    *) echo "usage: $0 [up|down]"; exit 2 ;;
esac
