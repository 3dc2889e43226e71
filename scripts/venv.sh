#!/usr/bin/env bash
# Ensure the project's virtual environment exists and matches requirements.txt; print its path.
#
# The environment (~7 GB: a CUDA build of torch plus TensorFlow) lives outside the clone, under
# $AUTODL_VENV_ROOT (default ~/.cache/autodl-submission), named by a hash of requirements.txt, so
# fresh clones (CI) and later sessions reuse it. When requirements.txt changes, the newest existing
# environment is renamed to the new hash and only the difference is installed: the disk never holds
# two copies. `.venv` in the clone is a symlink to it. All tools run as `python -m ...`, which keeps
# working after such a rename.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${AUTODL_VENV_ROOT:-$HOME/.cache/autodl-submission}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
hash="$(sha256sum "$here/requirements.txt" | cut -c1-12)"
venv="$root/venv-$hash"
mkdir -p "$root"

if [ ! -f "$venv/.complete" ]; then
  if [ ! -d "$venv" ]; then
    previous="$(ls -1dt "$root"/venv-* 2>/dev/null | head -n 1 || true)"
    if [ -n "$previous" ] && [ -x "$previous/bin/python" ]; then
      echo "[venv] requirements changed: updating $(basename "$previous") -> $(basename "$venv")" >&2
      rm -f "$previous/.complete"
      mv "$previous" "$venv"
    else
      echo "[venv] creating $venv (first run: several GB, takes a few minutes)" >&2
      "$python" -m venv "$venv"
    fi
  fi
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/requirements.txt" >&2
  touch "$venv/.complete"
fi
ln -sfn "$venv" "$here/.venv"
echo "$venv"
