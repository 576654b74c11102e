#!/usr/bin/env bash
# Makes sure the system libraries the Python stack needs are present.
#   libusb-1.0  : required, open3d's Python module links against it.
#   libjemalloc : optional, launch/*.py preload it when present (XLA on CPU runs faster with it).
set -euo pipefail

have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }

apt_install() {
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
  fi
}

if ! have_lib libusb-1.0.so.0; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "installing libusb-1.0-0 (needed by open3d) with apt-get"
    apt_install libusb-1.0-0
  else
    echo "error: open3d needs the system library libusb-1.0, which is missing." >&2
    echo "       run:  sudo apt-get install -y libusb-1.0-0" >&2
    exit 1
  fi
fi

if ! have_lib libjemalloc.so.2 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  apt_install libjemalloc2 || echo "note: libjemalloc2 not installed (optional, only a speed-up)"
fi
exit 0
