#!/usr/bin/env bash
# Run the whole test suite. Fixtures in tests/kafka and tests/flink start
# the local Kafka broker and Flink cluster they need and stop what they
# started. pytest's exit code 5 (no tests collected) counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -p no:cacheprovider -ra "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
