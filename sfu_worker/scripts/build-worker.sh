#!/usr/bin/env bash
# Build mediasoup's C++ worker from the npm package's sources against Debian's
# libraries (no downloads), and cache the binary outside the repository keyed by
# the mediasoup version.  Prints the path of the binary on stdout.
#
# Env: TELEMED_CACHE_DIR (default ~/.cache/telemed), MESON / NINJA (default: from
# PATH; `make setup` puts the project's venv first on PATH).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sfu_dir="$(dirname "$here")"
pkg="$sfu_dir/node_modules/mediasoup"
if [[ ! -f "$pkg/package.json" ]]; then
  echo "build-worker: $pkg is missing; run 'npm ci --ignore-scripts' in sfu_worker first" >&2
  exit 1
fi
version="$(node -p "require('$pkg/package.json').version")"
cache_dir="${TELEMED_CACHE_DIR:-$HOME/.cache/telemed}"
out_dir="$cache_dir/mediasoup-worker-$version-$(uname -m)"
bin="$out_dir/mediasoup-worker"

if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

meson="${MESON:-meson}"
ninja="${NINJA:-ninja}"
python="${PYTHON:-python3}"
build_root="$(mktemp -d "${TMPDIR:-/tmp}/mediasoup-worker-build.XXXXXX")"
trap 'rm -rf "$build_root"' EXIT

echo "build-worker: building mediasoup-worker $version (takes a few minutes)" >&2
cp -r "$pkg/worker" "$build_root/worker"
rm -rf "$build_root/worker/out" "$build_root/worker/subprojects/packagecache"
"$python" "$here/patch_meson.py" "$build_root/worker"
(
  cd "$build_root/worker"
  "$meson" setup build --buildtype=release -Db_ndebug=true --wrap-mode=nodownload >&2
  "$ninja" -C build -j "$(nproc)" mediasoup-worker >&2
)
mkdir -p "$out_dir"
cp "$build_root/worker/build/mediasoup-worker" "$bin.tmp.$$"
mv -f "$bin.tmp.$$" "$bin"
echo "build-worker: cached $bin" >&2
echo "$bin"
