#!/usr/bin/env bash
# Source-side text for distillation: the training sources of a prepared corpus plus more
# source sentences that have no reference, tokenized and BPE'd like the corpus and
# binarized with its dictionaries, so that distill.sh translates them all with the
# verifier. Their targets are placeholders (the source again): distillation replaces every
# target with the verifier's translation. Valid and test are the corpus's own. Resumable.
#
# usage: add_source_text.sh EXTRA_RAW PREP OUT SRC TGT
#   EXTRA_RAW  raw source sentences, one per line (e.g. data/make_gettext_corpus.py --extra-sources)
#   PREP       prepare_bitext.sh's output (PREP/bpe with codes and vocab.SRC, PREP/bin with the dictionaries)
#   OUT        OUT/bpe (train = corpus train + extra) and OUT/bin, the DATA_BIN and BPE_DIR of distill.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
EXTRA=$1 PREP=$2 OUT=$3 SRC=$4 TGT=$5
WORKERS=${WORKERS:-$(nproc)}
run mkdir -p "$OUT/bpe"
is_done "tokenize and BPE the extra source text" "$OUT/extra.bpe.$SRC" || run_to "$OUT/extra.bpe.$SRC" \
  bash -c "sacremoses -q -l $SRC -j $WORKERS normalize < '$EXTRA' | sacremoses -q -l $SRC -j $WORKERS tokenize -a \
    | subword-nmt apply-bpe -c '$PREP/bpe/codes' --vocabulary '$PREP/bpe/vocab.$SRC' --vocabulary-threshold 1"
is_done "training sources plus the extra ones" "$OUT/bpe/train.$TGT" || {
  run_to "$OUT/bpe/train.$SRC" cat "$PREP/bpe/train.$SRC" "$OUT/extra.bpe.$SRC"
  run_to "$OUT/bpe/train.$TGT" cat "$PREP/bpe/train.$TGT" "$OUT/extra.bpe.$SRC"  # placeholders
}
for split in valid test; do
  for lang in "$SRC" "$TGT"; do
    [ -e "$OUT/bpe/$split.$lang" ] || run ln -s "$(cd "$PREP/bpe" && pwd)/$split.$lang" "$OUT/bpe/$split.$lang"
  done
done
is_done "binarize with the corpus's dictionaries" "$OUT/bin/dict.$TGT.txt" || {
  rm -rf "$OUT/bin.tmp"
  run fairseq-preprocess --source-lang "$SRC" --target-lang "$TGT" \
    --trainpref "$OUT/bpe/train" --validpref "$OUT/bpe/valid" --testpref "$OUT/bpe/test" \
    --srcdict "$PREP/bin/dict.$SRC.txt" --tgtdict "$PREP/bin/dict.$TGT.txt" --destdir "$OUT/bin.tmp" --workers "$WORKERS"
  run mv "$OUT/bin.tmp" "$OUT/bin"
}
log "$(wc -l < "$OUT/bpe/train.$SRC") source sentences to distill in $OUT/bin"
