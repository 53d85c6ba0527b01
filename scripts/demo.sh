#!/usr/bin/env bash
# The main job: the whole SpecDec pipeline on the embedded demo corpus, on CPU.
#   1 generate the demo corpus      2 tokenize, BPE, binarize      3 train the verifier
#   4 verifier BLEU (greedy, beam 5) 5 distill the training set    6 train the drafter
#   7 decode the test set four ways (greedy, beam 5, SpecDec lossless, SpecDec relaxed), plus
#     SpecDec with perfect drafts (the bounds), at batch sizes 1, 8, 32
# Run it again to resume: finished steps are skipped. WORK (default work/demo) holds
# everything; sizes live in configs/demo.env, the length limits of every decoding step in
# configs/length_limits.env (MAX_LEN_A, MAX_LEN_B). SKIP_INSTALL=1 skips the install step.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$REPO_ROOT/configs/demo.env"
WORK=${WORK:-$REPO_ROOT/work/demo}
SRC=en TGT=de
mkdir -p "$WORK"

[ "${SKIP_INSTALL:-0}" = 1 ] || bash "$REPO_ROOT/scripts/install.sh"
start=$SECONDS

is_done "1/7 generate the demo corpus" "$WORK/raw/train.$TGT" || run "$PYTHON" "$REPO_ROOT/data/make_demo_corpus.py" \
  --out-dir "$WORK/raw" --train "$DEMO_TRAIN" --valid "$DEMO_VALID" --test "$DEMO_TEST" --seed "$DEMO_SEED"

log "2/7 prepare the data"
bash "$REPO_ROOT/scripts/prepare_bitext.sh" "$WORK/raw" "$WORK/prep" "$SRC" "$TGT" "$DEMO_BPE_MERGES"
DATA=$WORK/prep/bin

log "3/7 train the verifier (stock fairseq transformer)"
bash "$REPO_ROOT/scripts/train_verifier.sh" "$DATA" "$WORK/verifier" "$REPO_ROOT/configs/verifier_demo.args" \
  --no-progress-bar ${DEMO_VERIFIER_UPDATES:+--max-update "$DEMO_VERIFIER_UPDATES"}
VERIFIER=$WORK/verifier/checkpoint_last.pt

is_done "4/7 verifier BLEU on the test set" "$WORK/verifier_bleu.txt" || run_to "$WORK/verifier_bleu.txt" \
  bash "$REPO_ROOT/scripts/score_verifier.sh" "$DATA" "$VERIFIER" "$WORK/raw/test.$TGT" "$TGT"
cat "$WORK/verifier_bleu.txt"

log "5/7 distill the training set with the verifier (beam $DEMO_DISTILL_BEAM)"
BEAM=$DEMO_DISTILL_BEAM bash "$REPO_ROOT/scripts/distill.sh" "$DATA" "$WORK/prep/bpe" "$VERIFIER" \
  "$WORK/distill" "$SRC" "$TGT"

log "6/7 train the drafter on the distilled data, encoder from the verifier"
bash "$REPO_ROOT/scripts/train_drafter.sh" "$WORK/distill/bin" "$WORK/drafter" "$VERIFIER" \
  "$REPO_ROOT/configs/drafter_demo.args" --no-progress-bar ${DEMO_BLOCK_SIZE:+--block-size "$DEMO_BLOCK_SIZE"} \
  ${DEMO_DRAFTER_UPDATES:+--max-update "$DEMO_DRAFTER_UPDATES"}
DRAFTER=$WORK/drafter/checkpoint_last.pt

log "7/7 decode the test set four ways (and the perfect-draft bounds) at batch sizes $DEMO_BENCH_BATCH_SIZES (CPU)"
limit=()
[ "$DEMO_BENCH_SENTENCES" -gt 0 ] && limit=(--max-sentences "$DEMO_BENCH_SENTENCES")
is_done "benchmark" "$WORK/results/benchmark.json" || {
  run "$PYTHON" -m fairseq_specdec.benchmark \
    --data "$DATA" --verifier "$VERIFIER" --drafter "$DRAFTER" \
    --batch-sizes "$DEMO_BENCH_BATCH_SIZES" --modes greedy,beam5,specdec,specdec_relaxed --bounds \
    --repeats "$DEMO_BENCH_REPEATS" --warmup 1 --max-len-a "$MAX_LEN_A" --max-len-b "$MAX_LEN_B" \
    "${limit[@]}" --out-dir "$WORK/results.tmp"
  run mv "$WORK/results.tmp" "$WORK/results"
}
cat "$WORK/results/table.md" 2>/dev/null || true
log "demo finished in $((SECONDS - start)) s; outputs in $WORK"
