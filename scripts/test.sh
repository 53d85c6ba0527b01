#!/usr/bin/env bash
# Install what the tests need (once) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO_ROOT"
EXTRAS=test bash scripts/install.sh
set +e
python3 -m pytest tests "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
