#!/usr/bin/env bash
# Install what the tests need (idempotent), then run the whole test suite on the CPU.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/install.sh"
cd "$root"
exec python3 -m pytest -q tests "$@"
