#!/usr/bin/env bash
# Creates the study venv studies/.venv with abTEM and its friends. Idempotent: re-running it
# only installs what is missing. Never part of the default build or of CI.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
"$venv/bin/python" - <<'PY'
import abtem, ase, numpy, scipy, matplotlib
print(f"abtem {abtem.__version__}, ase {ase.__version__}, numpy {numpy.__version__}, "
      f"scipy {scipy.__version__}, matplotlib {matplotlib.__version__}")
PY
