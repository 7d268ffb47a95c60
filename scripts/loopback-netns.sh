#!/bin/sh
# Runs a command in a fresh network namespace whose only interface is loopback, so the
# end-to-end tests (Chromium, coturn, baresip, nats-server and voxgate) can only ever send
# traffic to 127.0.0.1/::1. Falls back to running the command as is where namespaces are
# not allowed (then the tests still target only loopback addresses themselves).
if [ -z "$VOXGATE_IN_NETNS" ] && command -v unshare >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
  exec unshare -n env VOXGATE_IN_NETNS=1 sh -c 'ip link set lo up 2>/dev/null || true; exec "$@"' sh "$@"
fi
exec "$@"
