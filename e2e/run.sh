#!/usr/bin/env bash
# Run the black-box end-to-end suite against the portcullis binary.
#
#   e2e/run.sh [pytest args...]        e.g. e2e/run.sh -k watch -x
#
# Binary: E2E_PORTCULLIS_BIN, else target/release/portcullis, else $CARGO_TARGET_DIR/release/portcullis.
# kubectl: KUBECTL, else /usr/bin/kubectl. Needs python3 (3.11+), node 20+ with npm, and PyPI and npm
# registry access on the first run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
venv="$here/.venv"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  for p in python3.11 python3; do
    if command -v "$p" >/dev/null 2>&1; then python="$p"; break; fi
  done
fi
[[ -n "$python" ]] || { echo "e2e/run.sh: python3 not found" >&2; exit 2; }

if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
# Install only when requirements changed since the last successful install (idempotent, offline-friendly).
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/requirements.txt"
  echo "$want" > "$stamp"
fi

# The Node clients (e2e/node): installed the same way, when node is there at all.
if command -v node >/dev/null 2>&1; then
  "$here/node/install"
else
  echo "e2e/run.sh: node not found; the openid-client tests will fail (run scripts/install-test-deps)" >&2
fi

cd "$root"
set +e
"$venv/bin/python" -m pytest -q e2e --timeout="${E2E_TIMEOUT:-120}" "$@"
code=$?
exit $code
