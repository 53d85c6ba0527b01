#!/usr/bin/env bash
# The main job: the whole SpecDec pipeline on the embedded demo corpus, on CPU.
#   1 generate the demo corpus      2 tokenize, BPE, binarize      3 train the verifier, average
#     its last checkpoints
#   4 verifier BLEU (greedy, beam 5) 5 distill the training set    6 train the drafter
#   7 decode the test set: greedy, beam 5, SpecDec lossless and relaxed with the trained
#     drafter, with the model-free n-gram drafter alone and combined, and with perfect drafts
#     (the bounds), at batch sizes 1, 8, 32
# Each step's wall time is printed at the end (and kept in WORK/step_times.txt).
# Run it again to resume: finished steps are skipped. WORK (default work/demo) holds
# everything; sizes live in configs/demo.env, the length limits of every decoding step in
# configs/length_limits.env (MAX_LEN_A, MAX_LEN_B). SKIP_INSTALL=1 skips the install step.
# DEMO_CORPUS=gettext runs the same pipeline on real text instead: English -> French
# software messages from this machine's gettext catalogs (data/make_gettext_corpus.py),
# with the sizes of configs/gettext.env, in work/gettext.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DEMO_CORPUS=${DEMO_CORPUS:-synthetic}
case "$DEMO_CORPUS" in
  synthetic) SRC=en TGT=de; WORK=${WORK:-$REPO_ROOT/work/demo} ;;
  gettext) SRC=en TGT=fr; WORK=${WORK:-$REPO_ROOT/work/gettext}; source "$REPO_ROOT/configs/gettext.env" ;;
  *) echo "error: DEMO_CORPUS=$DEMO_CORPUS: use synthetic (the default) or gettext" >&2; exit 2 ;;
esac
source "$REPO_ROOT/configs/demo.env"
mkdir -p "$WORK"

install_start=$SECONDS
[ "${SKIP_INSTALL:-0}" = 1 ] || bash "$REPO_ROOT/scripts/install.sh"
start=$SECONDS
step_start=$SECONDS
times=$(printf 'install\t%s s' "$((start - install_start))")
# step_done NAME: record the wall time since the previous step ended
step_done() { times+=$(printf '\n%s\t%s s' "$1" "$((SECONDS - step_start))"); step_start=$SECONDS; }

if [ "$DEMO_CORPUS" = gettext ]; then
  is_done "1/7 read the $TGT gettext catalogs" "$WORK/raw/train.$TGT" || run "$PYTHON" \
    "$REPO_ROOT/data/make_gettext_corpus.py" --out-dir "$WORK/raw" --lang "$TGT" --valid "$DEMO_VALID" \
    --test "$DEMO_TEST" --seed "$DEMO_SEED" ${DEMO_EXTRA_SOURCES:+--extra-sources}
else
  is_done "1/7 generate the demo corpus" "$WORK/raw/train.$TGT" || run "$PYTHON" "$REPO_ROOT/data/make_demo_corpus.py" \
    --out-dir "$WORK/raw" --train "$DEMO_TRAIN" --valid "$DEMO_VALID" --test "$DEMO_TEST" --seed "$DEMO_SEED"
fi
step_done "1 corpus"

log "2/7 prepare the data"
bash "$REPO_ROOT/scripts/prepare_bitext.sh" "$WORK/raw" "$WORK/prep" "$SRC" "$TGT" "$DEMO_BPE_MERGES" 250 \
  "$DEMO_CLEAN_RATIO"
DATA=$WORK/prep/bin
step_done "2 data"

log "3/7 train the verifier (stock fairseq transformer)"
bash "$REPO_ROOT/scripts/train_verifier.sh" "$DATA" "$WORK/verifier" "$REPO_ROOT/$DEMO_VERIFIER_CONFIG" \
  --no-progress-bar ${DEMO_VERIFIER_UPDATES:+--max-update "$DEMO_VERIFIER_UPDATES"}
# from here on the verifier is the average of its last DEMO_VERIFIER_AVERAGE checkpoints (the
# newest epoch checkpoints and checkpoint_last): the single last checkpoint loops more often
VERIFIER=$WORK/verifier/averaged.pt
is_done "3/7 average the verifier's last $DEMO_VERIFIER_AVERAGE checkpoints" "$VERIFIER" || {
  mapfile -t epochs < <(ls "$WORK/verifier"/checkpoint[0-9]*.pt | sort -V | tail -n "$((DEMO_VERIFIER_AVERAGE - 1))")
  run "$PYTHON" "$REPO_ROOT/scripts/wmt/average_checkpoints.py" --inputs "${epochs[@]}" \
    "$WORK/verifier/checkpoint_last.pt" --output "$VERIFIER"
}
step_done "3 verifier"

is_done "4/7 verifier BLEU on the test set" "$WORK/verifier_bleu.txt" || run_to "$WORK/verifier_bleu.txt" \
  bash "$REPO_ROOT/scripts/score_verifier.sh" "$DATA" "$VERIFIER" "$WORK/raw/test.$TGT" "$TGT"
cat "$WORK/verifier_bleu.txt"
step_done "4 verifier BLEU"

log "5/7 distill the training set with the verifier (beam $DEMO_DISTILL_BEAM)"
sources=$DATA sources_bpe=$WORK/prep/bpe
if [ -s "$WORK/raw/extra.$SRC" ]; then  # more source text to distill (gettext: other languages' msgids)
  bash "$REPO_ROOT/scripts/add_source_text.sh" "$WORK/raw/extra.$SRC" "$WORK/prep" "$WORK/distill_sources" "$SRC" "$TGT"
  sources=$WORK/distill_sources/bin sources_bpe=$WORK/distill_sources/bpe
fi
BEAM=$DEMO_DISTILL_BEAM bash "$REPO_ROOT/scripts/distill.sh" "$sources" "$sources_bpe" "$VERIFIER" \
  "$WORK/distill" "$SRC" "$TGT"
step_done "5 distillation"

log "6/7 train the drafter on the distilled data ($DEMO_DRAFTER_CONFIG)"
bash "$REPO_ROOT/scripts/train_drafter.sh" "$WORK/distill/bin" "$WORK/drafter" "$VERIFIER" \
  "$REPO_ROOT/$DEMO_DRAFTER_CONFIG" --no-progress-bar ${DEMO_BLOCK_SIZE:+--block-size "$DEMO_BLOCK_SIZE"} \
  ${DEMO_DRAFTER_UPDATES:+--max-update "$DEMO_DRAFTER_UPDATES"} ${DEMO_DRAFTER_FLAGS:-}
DRAFTER=$WORK/drafter/checkpoint_last.pt
step_done "6 drafter"

log "7/7 decode the test set (greedy, lean greedy, beam 5, SpecDec with each drafter, the perfect-draft bounds) at batch sizes $DEMO_BENCH_BATCH_SIZES (CPU)"
limit=()
[ "$DEMO_BENCH_SENTENCES" -gt 0 ] && limit=(--max-sentences "$DEMO_BENCH_SENTENCES")
is_done "benchmark" "$WORK/results/benchmark.json" || {
  run "$PYTHON" -m fairseq_specdec.benchmark \
    --data "$DATA" --verifier "$VERIFIER" --drafter "$DRAFTER" \
    --batch-sizes "$DEMO_BENCH_BATCH_SIZES" --modes greedy,greedy_lean,beam5,specdec,specdec_fixed,specdec_relaxed,specdec_ngram,specdec_combined --bounds \
    --ngram-data "$WORK/distill/bin" \
    --repeats "$DEMO_BENCH_REPEATS" --warmup 1 --max-len-a "$MAX_LEN_A" --max-len-b "$MAX_LEN_B" \
    "${limit[@]}" --out-dir "$WORK/results.tmp"
  run mv "$WORK/results.tmp" "$WORK/results"
}
cat "$WORK/results/table.md" 2>/dev/null || true
step_done "7 benchmark"
printf '%s\n' "$times" | tee "$WORK/step_times.txt"
log "demo finished in $((SECONDS - start)) s after installing ($((start - install_start)) s); outputs in $WORK"
