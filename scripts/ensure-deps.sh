#!/bin/sh
# Makes sure what `npm start` and `npm test` need is on this machine: the npm packages and
# Debian's nats-server (JetStream). Installs what it can (root + apt); otherwise says
# exactly what to run.
set -eu
if [ ! -d node_modules/@connectrpc ]; then
  echo "telemesh: installing npm packages…" >&2
  npm install --no-audit --no-fund
fi
if [ -n "${TELEMESH_NATS_URL:-}" ] && [ "${TELEMESH_REQUIRE_NATS_BINARY:-}" != "1" ]; then
  exit 0 # an external NATS is configured; no local binary needed to start
fi
if command -v nats-server >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "telemesh: nats-server not found; installing Debian's package…" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server) >&2
  command -v nats-server >/dev/null 2>&1 && exit 0
fi
echo "telemesh: nats-server (with JetStream) is required but not installed." >&2
echo "  Debian/Ubuntu: sudo apt-get install -y nats-server" >&2
echo "  or point Telemesh at a running server: TELEMESH_NATS_URL=nats://host:4222" >&2
exit 1
