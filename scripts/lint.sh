#!/bin/sh
# ruff and mypy with the pinned versions (settings in pyproject.toml). Exits non-zero if either finds anything.
set -u
cd "$(dirname "$0")/.."
. ./scripts/deps.sh
install_deps || exit 1
rc=0
echo "ruff check:"
.venv/bin/ruff check --output-format concise . || rc=1
echo "mypy:"
.venv/bin/mypy || rc=1
exit $rc
