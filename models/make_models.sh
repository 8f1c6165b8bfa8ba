#!/usr/bin/env bash
# Rebuild the models in this folder (see README.md). Needs python3 (3.11) with venv, and PyPI.
set -euo pipefail
exec python3 "$(dirname "$0")/make_models.py" "$@"
