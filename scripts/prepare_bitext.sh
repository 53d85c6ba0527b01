#!/usr/bin/env bash
# Tokenize (sacremoses), learn and apply a joint BPE (subword-nmt), and binarize with one
# joined dictionary (fairseq-preprocess), for a raw parallel corpus laid out as
# RAW/{train,valid,test}.{SRC,TGT}. Resumable: finished steps are skipped.
#
# usage: prepare_bitext.sh RAW OUT SRC TGT BPE_MERGES [MAX_LEN] [MAX_RATIO]
#   OUT/tok   tokenized text      OUT/bpe  BPE'd text, OUT/bpe/codes
#   OUT/bin   fairseq binarized data (dict.SRC.txt == dict.TGT.txt)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RAW=$1 OUT=$2 SRC=$3 TGT=$4 MERGES=$5 MAX_LEN=${6:-250} MAX_RATIO=${7:-1.5}
WORKERS=${WORKERS:-$(nproc)}
run mkdir -p "$OUT/tok" "$OUT/bpe"

for split in train valid test; do
  for lang in "$SRC" "$TGT"; do
    [ -f "$RAW/$split.$lang" ] || [ "${DRY_RUN:-0}" = 1 ] || { echo "error: missing $RAW/$split.$lang (expected RAW/{train,valid,test}.{$SRC,$TGT})" >&2; exit 1; }
    out="$OUT/tok/$split.raw.$lang"
    is_done "tokenize $split.$lang" "$out" || run_to "$out" \
      bash -c "sacremoses -q -l $lang -j $WORKERS normalize < '$RAW/$split.$lang' | sacremoses -q -l $lang -j $WORKERS tokenize -a"
  done
done

# drop training pairs that are empty, too long or too unbalanced (valid/test are kept whole)
is_done "clean train by length (1..$MAX_LEN) and ratio ($MAX_RATIO)" "$OUT/tok/train.$TGT" || run \
  "$PYTHON" "$REPO_ROOT/scripts/clean_corpus.py" "$OUT/tok/train.raw" "$OUT/tok/train" "$SRC" "$TGT" \
  --max-len "$MAX_LEN" --max-ratio "$MAX_RATIO"
for split in valid test; do
  for lang in "$SRC" "$TGT"; do
    [ -e "$OUT/tok/$split.$lang" ] || run ln -s "$split.raw.$lang" "$OUT/tok/$split.$lang"
  done
done

is_done "learn joint BPE ($MERGES merges)" "$OUT/bpe/codes" || {
  run subword-nmt learn-joint-bpe-and-vocab --input "$OUT/tok/train.$SRC" "$OUT/tok/train.$TGT" \
    -s "$MERGES" --num-workers "$WORKERS" -o "$OUT/bpe/codes.tmp" --write-vocabulary "$OUT/bpe/vocab.$SRC" "$OUT/bpe/vocab.$TGT" \
    && run mv "$OUT/bpe/codes.tmp" "$OUT/bpe/codes"
}

for split in train valid test; do
  for lang in "$SRC" "$TGT"; do
    out="$OUT/bpe/$split.$lang"
    is_done "apply BPE to $split.$lang" "$out" || run_to "$out" \
      subword-nmt apply-bpe --num-workers "$WORKERS" -c "$OUT/bpe/codes" --vocabulary "$OUT/bpe/vocab.$lang" \
      --vocabulary-threshold 1 --input "$OUT/tok/$split.$lang"
  done
done

is_done "binarize with one joined dictionary" "$OUT/bin/dict.$TGT.txt" || {
  rm -rf "$OUT/bin.tmp"
  run fairseq-preprocess --source-lang "$SRC" --target-lang "$TGT" \
    --trainpref "$OUT/bpe/train" --validpref "$OUT/bpe/valid" --testpref "$OUT/bpe/test" \
    --destdir "$OUT/bin.tmp" --joined-dictionary --workers "$WORKERS"
  run mv "$OUT/bin.tmp" "$OUT/bin"
}
log "data ready in $OUT/bin"
