#!/usr/bin/env bash
# Install fairseq-specdec (editable) and what it needs into the current Python, once.
# torch is installed first and pinned (TORCH_VERSION) so that no later requirement pulls
# a CUDA build on a CPU machine; set TORCH_INDEX_URL (e.g. PyTorch's CPU wheel index)
# where the default index serves CUDA builds. EXTRAS picks setup.py extras (comma list).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-test}

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "+ pip install torch==${TORCH_VERSION:-2.13.0}" >&2
  "$PYTHON" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
modules="fairseq sacremoses subword_nmt sacrebleu"
case ",$EXTRAS," in *,test,*) modules="$modules pytest matplotlib ctranslate2" ;; esac
imports=$(echo "$modules" | sed 's/ /, /g')
if ! "$PYTHON" -m pip show -q fairseq-specdec >/dev/null 2>&1 \
   || ! "$PYTHON" -c "import $imports" >/dev/null 2>&1; then
  echo "+ pip install -e $REPO_ROOT[$EXTRAS]" >&2
  "$PYTHON" -m pip install -q -e "$REPO_ROOT[$EXTRAS]"
fi
