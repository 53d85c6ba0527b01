#!/usr/bin/env bash
# Detokenized sacreBLEU of a model on the test set with greedy and beam-5 decoding.
# usage: score_verifier.sh DATA_BIN CKPT RAW_REFERENCE TGT_LANG
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DATA=$1 CKPT=$2 REF=$3 TGT=$4
for beam in 1 5; do
  hyp=$(mktemp)
  fairseq-generate "$DATA" --user-dir "$USER_DIR" --path "$CKPT" --beam "$beam" --max-tokens 8000 --required-batch-size-multiple 1 \
      --remove-bpe 2>/dev/null | grep '^H-' | sort -t- -k2 -n | cut -f3 \
    | sacremoses -q -l "$TGT" detokenize > "$hyp"
  printf 'verifier beam %s: %s\n' "$beam" "$(sacrebleu -b -w 2 "$REF" < "$hyp")"
  rm -f "$hyp"
done
