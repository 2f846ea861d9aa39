#!/usr/bin/env bash
# Make the checkout runnable: system packages (apt-get, when root) and a
# .venv with the Python dependencies. Idempotent and quick when nothing changed.
# Usage: scripts/bootstrap.sh [run|test|train|cluster]   (cluster: run + Mosquitto and HAProxy)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"

apt_run=(python3 python3-venv python3-dev libportaudio2 libsndfile1)
apt_test=(pulseaudio pulseaudio-utils libasound2-plugins mosquitto haproxy chromium)
packages=("${apt_run[@]}")
[ "$mode" = test ] && packages+=("${apt_test[@]}")
[ "$mode" = cluster ] && packages+=(mosquitto haproxy)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing system packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: please install: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

extras=""
[ "$mode" = test ] && extras="[dev]"
[ "$mode" = train ] && extras="[dev,train]"
hash="$(cat pyproject.toml | sha256sum | cut -c1-16)"
stamp=".venv/.installed-$hash$mode"
# run and cluster need no extras: any install of this pyproject (test, train) has what they need.
if [ "$mode" = run ] || [ "$mode" = cluster ]; then
  for done in .venv/.installed-"$hash"*; do
    if [ -f "$done" ]; then stamp="$done"; fi
  done
fi
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing Python packages into .venv${extras:+ (with test tools)}" >&2
  # pip's and setuptools' notices go to a log; it is shown only if the install fails.
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e ".$extras"; } \
      >.venv/pip-install.log 2>&1; then
    tail -n 30 .venv/pip-install.log >&2
    echo "bootstrap: installing the Python packages failed (full log: .venv/pip-install.log)" >&2
    exit 1
  fi
  touch "$stamp"
fi
