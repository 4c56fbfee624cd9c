#!/usr/bin/env bash
# Create .venv, install the pinned requirements and the SIP test kit
# (pyproject.toml, editable); re-runs are a no-op unless either changed.
set -euo pipefail
venv=${VENV:-.venv}
stamp="$venv/.requirements.sha256"
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "[venv] python3 cannot create virtual environments: install python3-venv" >&2
    exit 1
  fi
fi
echo "[venv] installing requirements.txt into $venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip >/dev/null
"$venv/bin/pip" install -q -r requirements.txt
echo "[venv] installing the SIP test kit (pyproject.toml, editable)"
"$venv/bin/pip" install -q --no-deps -e .
echo "$want" >"$stamp"
