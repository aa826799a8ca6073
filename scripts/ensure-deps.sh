#!/bin/sh
# Makes sure what `npm start` and `npm test` need is on this machine: the npm packages and
# Debian's nats-server (JetStream); with `--test`, also Debian's Prometheus and Alertmanager
# (reference peers of the interop tests). Installs what it can (root + apt); otherwise says
# exactly what to run.
set -eu
apt_install() {
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "telemesh: installing Debian packages: $*" >&2
    log=$(mktemp)
    if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@") >"$log" 2>&1; then
      tail -20 "$log" >&2
      rm -f "$log"
      return 1
    fi
    rm -f "$log"
    return 0
  fi
  return 1
}
if [ "${1:-}" = "--test" ]; then
  need=""
  command -v prometheus >/dev/null 2>&1 || need="$need prometheus"
  command -v prometheus-alertmanager >/dev/null 2>&1 || need="$need prometheus-alertmanager"
  if [ -n "$need" ] && ! apt_install $need; then
    echo "telemesh: the tests need Debian's$need: sudo apt-get install -y --no-install-recommends$need" >&2
    exit 1
  fi
fi
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
if apt_install nats-server && command -v nats-server >/dev/null 2>&1; then
  exit 0
fi
echo "telemesh: nats-server (with JetStream) is required but not installed." >&2
echo "  Debian/Ubuntu: sudo apt-get install -y nats-server" >&2
echo "  or point Telemesh at a running server: TELEMESH_NATS_URL=nats://host:4222" >&2
exit 1
