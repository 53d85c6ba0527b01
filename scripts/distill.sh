#!/usr/bin/env bash
# Sequence-level knowledge distillation: translate the training set with the verifier
# (beam 5 by default) through fairseq-generate, restore the corpus order, and binarize
# the translations as the drafter's training targets with the verifier's dictionary.
# Resumable per shard: each shard's output is written whole or not at all.
#
# usage: distill.sh DATA_BIN BPE_DIR VERIFIER_CKPT OUT_DIR SRC TGT
#   BPE_DIR holds the BPE'd text (train/valid/test.{SRC,TGT}) that DATA_BIN was made from.
#   env: BEAM (5), SHARDS (4), MAX_TOKENS (8000), MAX_LEN_A/MAX_LEN_B (configs/length_limits.env),
#        GEN_FLAGS (extra fairseq-generate flags)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DATA=$1 BPE=$2 VERIFIER=$3 OUT=$4 SRC=$5 TGT=$6
BEAM=${BEAM:-5} SHARDS=${SHARDS:-4} MAX_TOKENS=${MAX_TOKENS:-8000}
run mkdir -p "$OUT/gen"
# every shard needs at least one batch (fairseq-generate fails on an empty shard): a small
# training set gets fewer shards; the estimate (source tokens / MAX_TOKENS) errs low
batches=$(( ($(wc -w < "$BPE/train.$SRC") + MAX_TOKENS - 1) / MAX_TOKENS ))
(( batches > 0 )) || batches=1
if (( batches < SHARDS )); then
  log "distill: about $batches batch(es) of $MAX_TOKENS tokens: $batches shard(s) instead of $SHARDS"
  SHARDS=$batches
fi

for ((i = 0; i < SHARDS; i++)); do
  out="$OUT/gen/shard$i.txt"
  is_done "distill: translate training shard $((i + 1))/$SHARDS with beam $BEAM" "$out" || run_to "$out" \
    fairseq-generate "$DATA" --user-dir "$USER_DIR" --path "$VERIFIER" --gen-subset train \
      --source-lang "$SRC" --target-lang "$TGT" --beam "$BEAM" --max-len-a "$MAX_LEN_A" --max-len-b "$MAX_LEN_B" \
      --max-tokens "$MAX_TOKENS" --required-batch-size-multiple 1 \
      --distributed-world-size "$SHARDS" --distributed-rank "$i" --skip-invalid-size-inputs-valid-test ${GEN_FLAGS:-}
done

is_done "distill: restore corpus order" "$OUT/text/train.$TGT" || {
  run mkdir -p "$OUT/text"
  run "$PYTHON" "$REPO_ROOT/scripts/collect_hypotheses.py" --source "$BPE/train.$SRC" \
    --out-prefix "$OUT/text/train" --src "$SRC" --tgt "$TGT" "$OUT"/gen/shard*.txt
}

is_done "distill: binarize with the verifier's dictionary" "$OUT/bin/dict.$TGT.txt" || {
  rm -rf "$OUT/bin.tmp"
  run fairseq-preprocess --source-lang "$SRC" --target-lang "$TGT" \
    --trainpref "$OUT/text/train" --validpref "$BPE/valid" --testpref "$BPE/test" \
    --srcdict "$DATA/dict.$SRC.txt" --tgtdict "$DATA/dict.$TGT.txt" \
    --destdir "$OUT/bin.tmp" --workers "${WORKERS:-$(nproc)}"
  run mv "$OUT/bin.tmp" "$OUT/bin"
}
log "distilled data ready in $OUT/bin"
