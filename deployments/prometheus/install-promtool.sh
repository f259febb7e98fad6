#!/usr/bin/env bash
# Makes `promtool` available for the alert-rule tests (tests/test_prometheus_rules.py).
#
# Idempotent and quick when promtool is already there. Otherwise it takes the binary out of
# Debian's `prometheus` package (`apt-get download` + `dpkg-deb -x`): no service is installed or
# started. It goes to /usr/local/bin when writable (root, as in CI), else to ~/.local/bin.
# Fails loudly (non-zero) when it cannot install it: CI must run those tests.
#
# Usage: bash deployments/prometheus/install-promtool.sh   (PROMTOOL_DIR=DIR to choose where)
set -euo pipefail

say() { echo "install-promtool: $*" >&2; }

if [ -n "${PROMTOOL_DIR:-}" ]; then
  dest_dir="$PROMTOOL_DIR"
elif [ -w /usr/local/bin ]; then
  dest_dir=/usr/local/bin
else
  dest_dir="$HOME/.local/bin"
fi

# Already available? (on PATH, or where this script puts it)
for candidate in "$(command -v promtool 2>/dev/null || true)" "$dest_dir/promtool" \
  /usr/local/bin/promtool "$HOME/.local/bin/promtool"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" --version >/dev/null 2>&1; then
    say "already installed: $candidate"
    "$candidate" --version 2>&1 | head -n 1
    exit 0
  fi
done

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  say "ERROR: promtool is not installed and apt-get/dpkg-deb are not available."
  say "Install Prometheus' promtool by hand (e.g. the 'prometheus' package) and re-run."
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

download() { (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1); }

if ! download; then
  say "apt-get download failed: refreshing the package lists (apt-get update)"
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq >/dev/null
  else
    sudo -n apt-get update -qq >/dev/null
  fi
  if ! download; then
    say "ERROR: 'apt-get download prometheus' failed; cannot install promtool."
    exit 1
  fi
fi

deb="$(ls "$work"/prometheus_*.deb)"
dpkg-deb -x "$deb" "$work/root"
if [ ! -x "$work/root/usr/bin/promtool" ]; then
  say "ERROR: $deb holds no usr/bin/promtool."
  exit 1
fi
mkdir -p "$dest_dir"
install -m 0755 "$work/root/usr/bin/promtool" "$dest_dir/promtool.tmp.$$"
mv -f "$dest_dir/promtool.tmp.$$" "$dest_dir/promtool"   # atomic: never a half-copied binary
say "installed $dest_dir/promtool from $(basename "$deb")"
case ":$PATH:" in
  *":$dest_dir:"*) ;;
  *) say "note: $dest_dir is not on PATH; tests find /usr/local/bin and ~/.local/bin, else set PROMTOOL=$dest_dir/promtool" ;;
esac
"$dest_dir/promtool" --version 2>&1 | head -n 1
