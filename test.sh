#!/bin/sh
# Installs what the tests need on a fresh Debian bookworm / Raspberry Pi OS machine, then runs them all.
# Run as root: the network tests build namespaces and start bind9 and keepalived.
set -eu
cd "$(dirname "$0")"
. ./scripts/deps.sh
install_deps
exec .venv/bin/python -m pytest -q "$@"
