#!/usr/bin/env bash
# Debian packages and local servers the test suite talks to. Idempotent: installs only what is
# missing, starts only what is not running. Needs root (CI and these machines run as root).
set -euo pipefail

need=()
# chromium: the waiting-room page test drives it headless over the DevTools protocol;
# wrk: the load generator of tests/bench/waitingroom.py
# prometheus: promtool checks deploy/prometheus/rules.yaml and the server scrapes a worker in tests/e2e
#   (the package enables a systemd unit; nothing starts it on these machines, the tests run their own)
# influxdb: the InfluxDB 1.x server; the suite starts its own instance (tests/conftest.py: influxdb_url)
# nginx: the proxy in front of a site gated by the waiting room (auth_request); the test runs its own
#   as a subprocess with its own config and port and needs nothing of the package's own service
for pkg_bin in "redis-server:redis-server" "chromium:chromium" "wrk:wrk" "prometheus:promtool" "influxdb:influxd" \
               "nginx:nginx"; do
  pkg=${pkg_bin%%:*}; bin=${pkg_bin##*:}
  command -v "$bin" >/dev/null 2>&1 || need+=("$pkg")
done
# a Japanese font: the waiting page's screenshots in Japanese show boxes without one (the text is right either way)
if command -v fc-list >/dev/null 2>&1 && [ -z "$(fc-list :lang=ja)" ]; then need+=("fonts-ipafont-gothic"); fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need[*]} — install them (apt-get install ${need[*]}) or run as root" >&2
    exit 1
  fi
  echo "installing Debian packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # build the font cache now: otherwise Chromium's first page in Japanese waits for it (seen: over 30 s)
  if command -v fc-cache >/dev/null 2>&1; then fc-cache -f >/dev/null 2>&1 || true; fi
fi

# Redis: the machine usually runs one on 6379; start one if not.
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  echo "starting redis-server on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
