#!/usr/bin/env bash
# Detokenized sacreBLEU of a model on the test set with greedy and beam-5 decoding, and how
# many hypotheses hit the length limit (MAX_LEN_A * source length + MAX_LEN_B, from
# configs/length_limits.env): those ended because of the limit, not with eos.
# usage: score_verifier.sh DATA_BIN CKPT RAW_REFERENCE TGT_LANG
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DATA=$1 CKPT=$2 REF=$3 TGT=$4
out=$(mktemp) hyp=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$hyp" "$err"' EXIT
for beam in 1 5; do
  # BPE kept in the output (removed below) so that lengths count tokens as the limit does
  # fairseq's log is shown only when the command fails
  if ! fairseq-generate "$DATA" --user-dir "$USER_DIR" --path "$CKPT" --beam "$beam" --max-tokens 8000 \
      --required-batch-size-multiple 1 --max-len-a "$MAX_LEN_A" --max-len-b "$MAX_LEN_B" 2> "$err" > "$out"; then
    grep -v '^INFO:fairseq_cli.generate:{' "$err" | tail -n 15 >&2  # not the one-line config dump
    echo "score_verifier.sh: fairseq-generate --beam $beam failed on $CKPT (its last lines above)" >&2
    exit 1
  fi
  grep '^H-' "$out" | sort -t- -k2 -n | cut -f3 | sed -E 's/@@( |$)//g' | sacremoses -q -l "$TGT" detokenize > "$hyp"
  # a hypothesis hits the limit when it is as long as the limit its own source sets (source
  # tokens + eos); fairseq applies the limit of the batch's longest source, which is the
  # same or higher: a hypothesis that passed its own limit counts too (decoded alone, it was cut)
  at_limit=$(awk -F'\t' -v a="$MAX_LEN_A" -v b="$MAX_LEN_B" '
    /^S-/ { src[substr($1, 3)] = split($2, w, " ") }
    /^H-/ { hyp[substr($1, 3)] = split($3, w, " ") }
    END { for (id in hyp) { n++; if (hyp[id] >= int(a * (src[id] + 1) + b)) hit++ }
          printf "%d of %d", hit, n }' "$out")
  printf 'verifier beam %s: %s (%s hit the length limit)\n' "$beam" "$(sacrebleu -b -w 2 "$REF" < "$hyp")" "$at_limit"
done
