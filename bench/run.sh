#!/usr/bin/env bash
# Every benchmark, bounded (< 6.5 minutes): bench/run.sh [--duration 8] [--connections 100]
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout 380 .venv/bin/python -m bench.run "$@"
