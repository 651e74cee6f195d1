#!/usr/bin/env bash
# Install what the tests need (idempotent), then run the whole test suite on the CPU: test files
# on two workers (pytest-xdist), each file's tests in one worker so module fixtures are made once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/install.sh"
cd "$root"
exec python3 -m pytest -q -n 2 --dist loadfile tests "$@"
