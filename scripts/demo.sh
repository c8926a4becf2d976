#!/usr/bin/env bash
# The demo: hyprd in its own network namespace ("hypr-demo"), so trying hypr never changes this host's network.
# `scripts/demo.sh` brings it up (again: harmless), `scripts/demo.sh down` removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
NS=${HYPR_DEMO_NETNS:-hypr-demo}
export HYPR_DATA_DIR=${HYPR_DATA_DIR:-/var/lib/hypr-demo}
export HYPR_RUNTIME_DIR=${HYPR_RUNTIME_DIR:-/run/hypr-demo}
HYPR=".venv/bin/hypr"
SOCK="$HYPR_RUNTIME_DIR/hypr.sock"

daemon_up() { [ -S "$SOCK" ] && $HYPR version >/dev/null 2>&1; }

down() {
    if daemon_up; then examples/demo.sh down || true; fi
    if [ -f "$HYPR_RUNTIME_DIR/hyprd.pid" ]; then
        kill "$(cat "$HYPR_RUNTIME_DIR/hyprd.pid")" 2>/dev/null || true
    fi
    ip netns del "$NS" 2>/dev/null || true
    find "$HYPR_RUNTIME_DIR" -name netns -exec umount -l {} \; 2>/dev/null || true
    rm -rf "$HYPR_DATA_DIR" "$HYPR_RUNTIME_DIR"
    echo "demo removed (netns $NS, $HYPR_DATA_DIR, $HYPR_RUNTIME_DIR)"
}

up() {
    ip netns list | grep -qw "$NS" || { ip netns add "$NS"; ip -n "$NS" link set lo up; }
    if ! daemon_up; then
        mkdir -p "$HYPR_RUNTIME_DIR"
        nsenter --net="/run/netns/$NS" setsid .venv/bin/hyprd >>"$HYPR_RUNTIME_DIR/hyprd.log" 2>&1 < /dev/null &
        for _ in $(seq 100); do daemon_up && break; sleep 0.1; done
        daemon_up || { echo "hyprd did not start; see $HYPR_RUNTIME_DIR/hyprd.log"; exit 1; }
    fi
    $HYPR version
    NS="$NS" HYPR="$HYPR" examples/demo.sh up
    printf '\nhyprd runs in netns %s. Try: HYPR_RUNTIME_DIR=%s %s ps\n' "$NS" "$HYPR_RUNTIME_DIR" "$HYPR"
    printf 'Tear down everything (stack, daemon, namespace, state) with: make stop-demo\n'
}

case "${1:-up}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 [up|down]"; exit 2 ;;
esac
