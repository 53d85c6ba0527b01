#!/usr/bin/env bash
# Reproduce SpecDec (Xia et al., EMNLP Findings 2023) on WMT14 EN<->DE or WMT16 EN<->RO:
#
#   download        fetch the WMT corpora -> DATA/<corpus>/raw/{train,valid,test}.{L1,L2}
#   prepare         Moses tokenization, cleaning, joint BPE, fairseq binarization (joined dict)
#   train-verifier  stock fairseq Transformer-base, then the average of its last checkpoints
#   distill         translate the training set with the verifier (beam 5) and binarize it
#   train-drafter   the drafter (--drafter) on the distilled data, started from the verifier; then
#                   the average of its last checkpoints -> RUN/drafter_chain | RUN/drafter_specdec
#                   chain (default): EAGLE-style chain drafter (specdec_drafter_chain), one causal
#                     layer over the verifier's states, the verifier's encoder and output projection,
#                     k from drafter_chain.args: the drafter that wins at base size
#                   spec-drafter: the paper's Spec-Drafter (specdec_drafter_base, 12+2 layers,
#                     glancing, k from drafter_specdec.args): to reproduce the paper
#   evaluate        test set: greedy, beam 5, SpecDec (beta=1), SpecDec relaxed (beta=3, tau=1)
#                   with the drafter (chain: --draft-vocab CHAIN_DRAFT_VOCAB) -> RUN/eval/KIND/
#                   results.md (tokenized BLEU, compound split for EN-DE; sacreBLEU); KIND is
#                   chain or specdec (the verifier's greedy and beam 5 in RUN/eval, shared)
#   benchmark       python -m fairseq_specdec.benchmark at batch 1 and larger batches
#                   -> RUN/benchmark_KIND
#
# usage: scripts/wmt/run.sh PAIR [options]
#   PAIR               wmt14_en_de | wmt14_de_en | wmt16_en_ro | wmt16_ro_en
#   --stages a,b,...   stages to run (default: all of them, in the order above)
#   --drafter KIND     chain (default: the chain drafter, configs' drafter_chain.args) or
#                      spec-drafter (the paper's Spec-Drafter, drafter_specdec.args); each kind
#                      has its own drafter, evaluation and benchmark outputs in RUN
#   --dry-run          print every command, run nothing, create nothing
#   --data-root DIR    corpora and binarized data (default: work/wmt/data)
#   --ckpt-root DIR    checkpoints and results, in DIR/PAIR (default: work/wmt/runs)
#   --gpus N           GPUs training runs on, all nodes together (default: the GPUs this
#                      machine has, per CUDA_VISIBLE_DEVICES or nvidia-smi, or 1); sets
#                      --update-freq (tokens per update kept as in recipe.env) and, when N > 1,
#                      fairseq's --distributed-world-size
#   --train-flags "…"  extra fairseq-train flags for both models, e.g. for several nodes:
#                      "--distributed-init-method tcp://HOST:PORT --distributed-rank R"
#   --config-dir DIR   configs to use (default: $RECIPE_CONFIG_DIR, else configs/<corpus>)
#   --mirror URL       fetch the archives from URL/<archive name> (see download_wmt.py)
# env: RECIPE_CONFIG_DIR (as --config-dir), RECIPE_SKIP_DOWNLOAD=1 (skip the download stage:
#      the raw corpus is already in DATA/<corpus>/raw), PYTHON.
#
# Resumable: run it again and finished steps are skipped (every step checks its output).
# Hyperparameters live in the config dir: recipe.env (sizes, BPE, tokens per update,
# distillation, decoding), verifier.args, drafter_chain.args, drafter_specdec.args,
# generate.args (one flag per line; only the --drafter kind's args file is needed).
# Multi-GPU and multi-node training, time estimates, the paper's figures: docs/reproduce.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../lib.sh"

# the plugin importable by every python command below, installed or not
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"

ALL_STAGES="download prepare train-verifier distill train-drafter evaluate benchmark"
die() { echo "error: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit "${1:-0}"; }

PAIR="" STAGES="" DATA_ROOT="$REPO_ROOT/work/wmt/data" CKPT_ROOT="$REPO_ROOT/work/wmt/runs"
GPUS="" TRAIN_FLAGS="" MIRROR="" CONFIG_DIR="${RECIPE_CONFIG_DIR:-}" DRAFTER_KIND=chain
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) export DRY_RUN=1 ;;
    --stages) STAGES=${2:?}; shift ;;
    --drafter) DRAFTER_KIND=${2:?}; shift ;;
    --data-root) DATA_ROOT=${2:?}; shift ;;
    --ckpt-root) CKPT_ROOT=${2:?}; shift ;;
    --gpus) GPUS=${2:?}; shift ;;
    --train-flags) TRAIN_FLAGS=${2?}; shift ;;
    --config-dir) CONFIG_DIR=${2:?}; shift ;;
    --mirror) MIRROR=${2:?}; shift ;;
    -h|--help) usage 0 ;;
    -*) echo "error: unknown option $1" >&2; usage 2 ;;
    *) [ -z "$PAIR" ] || die "one PAIR only (got $PAIR and $1)"; PAIR=$1 ;;
  esac
  shift
done

case $PAIR in
  wmt14_en_de) CORPUS=wmt14_en_de SRC=en TGT=de ;;
  wmt14_de_en) CORPUS=wmt14_en_de SRC=de TGT=en ;;
  wmt16_en_ro) CORPUS=wmt16_en_ro SRC=en TGT=ro ;;
  wmt16_ro_en) CORPUS=wmt16_en_ro SRC=ro TGT=en ;;
  "") echo "error: give a PAIR" >&2; usage 2 ;;
  *) die "unknown PAIR $PAIR (wmt14_en_de, wmt14_de_en, wmt16_en_ro, wmt16_ro_en)" ;;
esac
L1=${CORPUS#*_}; L1=${L1%_*}; L2=${CORPUS##*_}  # the corpus' own order (en de / en ro)

STAGES=${STAGES:-${ALL_STAGES// /,}}
for s in ${STAGES//,/ }; do
  case " $ALL_STAGES " in *" $s "*) ;; *) die "unknown stage $s (stages: $ALL_STAGES)" ;; esac
done
want() { case ",$STAGES," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# the drafter kind: its args file, its name in RUN, what it is, and its recipe.env variables
case $DRAFTER_KIND in
  chain) DRAFTER_TAG=chain DRAFTER_WHAT="the EAGLE-style chain drafter" DRAFTER_ARCHS="specdec_drafter_chain*" ;;
  spec-drafter) DRAFTER_TAG=specdec DRAFTER_WHAT="the paper's Spec-Drafter"
    DRAFTER_ARCHS="a Spec-Drafter architecture: specdec_drafter_base, specdec_drafter_6e6d, ..." ;;
  *) die "--drafter: chain or spec-drafter, got '$DRAFTER_KIND'" ;;
esac
DRAFTER_ARGS_FILE=drafter_$DRAFTER_TAG.args

CONFIG_DIR=${CONFIG_DIR:-$REPO_ROOT/configs/$CORPUS}
for f in recipe.env verifier.args "$DRAFTER_ARGS_FILE" generate.args; do
  [ -f "$CONFIG_DIR/$f" ] || die "missing $CONFIG_DIR/$f (--drafter $DRAFTER_KIND)"
done
# shellcheck disable=SC1091
source "$CONFIG_DIR/recipe.env"
DATA_ROOT=$(realpath -m "$DATA_ROOT") CKPT_ROOT=$(realpath -m "$CKPT_ROOT") CONFIG_DIR=$(realpath "$CONFIG_DIR")
DRAFTER_ARGS=$CONFIG_DIR/$DRAFTER_ARGS_FILE

# recipe_var NAME: a recipe.env variable that must be set (an empty value is allowed)
recipe_var() { [ -n "${!1+x}" ] || die "$CONFIG_DIR/recipe.env sets no $1"; printf '%s' "${!1}"; }
DRAFTER_DRAFT_FLAGS=""  # decoding flags of the drafter kind, for the evaluate and benchmark stages
if [ "$DRAFTER_KIND" = chain ]; then
  DRAFTER_TOKENS=$(recipe_var CHAIN_DRAFTER_TOKENS_PER_UPDATE)
  DRAFTER_AVERAGE=$(recipe_var CHAIN_DRAFTER_AVERAGE)
  CHAIN_DRAFT_VOCAB=$(recipe_var CHAIN_DRAFT_VOCAB)
  [[ $CHAIN_DRAFT_VOCAB =~ ^[0-9]+$ ]] || die "CHAIN_DRAFT_VOCAB wants a number of tokens (0 = all), got '$CHAIN_DRAFT_VOCAB'"
  [ "$CHAIN_DRAFT_VOCAB" = 0 ] || DRAFTER_DRAFT_FLAGS="--draft-vocab $CHAIN_DRAFT_VOCAB"
else
  DRAFTER_TOKENS=$(recipe_var SPEC_DRAFTER_TOKENS_PER_UPDATE)
  DRAFTER_AVERAGE=$(recipe_var SPEC_DRAFTER_AVERAGE)
fi

# ---------------------------------------------------------------- helpers
# arg_value FILE FLAG: the value of FLAG in a configs/*.args file (empty when absent)
arg_value() { read_args "$1" | awk -v f="$2" '{ for (i = 1; i < NF; i++) if ($i == f) { print $(i + 1); exit } }'; }
has_flag() { read_args "$1" | tr ' ' '\n' | grep -qx -- "$2"; }

# all_done NAME FILE...: like is_done, for a step with several outputs
all_done() {
  local name=$1 f; shift
  for f in "$@"; do [ -e "$f" ] || { log "$name"; return 1; }; done
  log "$name: done already ($* exist), skipping"
}

# need FILE WHAT: stop with a clear message when an earlier stage's output is missing
need() { [ "${DRY_RUN:-0}" = 1 ] || [ -e "$1" ] || die "$1 not found: run the $2 stage first"; }

local_gpus() {
  if [ -n "${CUDA_VISIBLE_DEVICES+x}" ]; then
    case $CUDA_VISIBLE_DEVICES in ""|-1) echo 0 ;; *) echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c . ;; esac
  elif command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true
  else
    echo 0
  fi
}
LOCAL_GPUS=$(local_gpus); LOCAL_GPUS=${LOCAL_GPUS:-0}
HAVE_GPU=$(( LOCAL_GPUS > 0 ? 1 : 0 ))
GPUS=${GPUS:-$(( LOCAL_GPUS > 0 ? LOCAL_GPUS : 1 ))}
[[ $GPUS =~ ^[1-9][0-9]*$ ]] || die "--gpus wants a positive number, got $GPUS"
# fairseq 0.12's batch_by_size drops the last batch of a split when its size is not a multiple
# of --required-batch-size-multiple (8 by default): fairseq-generate would silently skip up to
# 7 sentences of the test set (and of each distillation shard). 1 keeps every sentence.
KEEP_ALL="--required-batch-size-multiple 1"
FP16_GEN="" BENCH_DEVICE=""  # on a GPU: fp16 decoding, and the benchmark on cuda
if [ "$HAVE_GPU" = 1 ]; then FP16_GEN="--fp16" BENCH_DEVICE="--device cuda --fp16"; fi
DRY_NOTE=""; [ "${DRY_RUN:-0}" = 1 ] && DRY_NOTE=" | dry run: nothing is run"

# train_flags CONFIG TOKENS_PER_UPDATE: the flags run.sh adds to a config's fairseq-train
train_flags() {
  local config=$1 tokens=$2 max_tokens freq
  echo "--source-lang $SRC --target-lang $TGT"
  if [ "$GPUS" -gt 1 ]; then echo "--distributed-world-size $GPUS"; fi
  # --train-flags may override the config's --max-tokens (the last flag wins in fairseq) or
  # give --update-freq itself
  max_tokens=$(echo " $TRAIN_FLAGS " | awk '{ for (i = 1; i < NF; i++) if ($i == "--max-tokens") v = $(i + 1) } END { print v }')
  max_tokens=${max_tokens:-$(arg_value "$config" --max-tokens)}
  if [ -n "$tokens" ] && [ -n "$max_tokens" ] && ! has_flag "$config" --update-freq \
     && [[ " $TRAIN_FLAGS " != *" --update-freq "* ]]; then
    freq=$(( (tokens + max_tokens * GPUS - 1) / (max_tokens * GPUS) ))
    echo "--update-freq $freq"
    log "$(basename "$config"): $GPUS GPU(s) x $max_tokens tokens x update-freq $freq = $(( GPUS * max_tokens * freq )) tokens per update (target $tokens)"
    if [ $(( GPUS * max_tokens * freq * 4 )) -gt $(( tokens * 5 )) ]; then
      log "warning: $(( GPUS * max_tokens * freq )) tokens per update is well above the $tokens wanted; lower --max-tokens in $config"
    fi
  fi
  echo "$TRAIN_FLAGS"
}

check_fp16() {
  if has_flag "$1" --fp16 && [ "$HAVE_GPU" = 0 ]; then
    if [ "${DRY_RUN:-0}" = 1 ]; then
      log "warning: $1 asks for --fp16 and this machine has no GPU (fine for a dry run)"
    else
      die "$1 asks for --fp16 but no GPU is visible; train on a GPU machine (or use a config dir without --fp16)"
    fi
  fi
}

# decode OUT CMD...: print CMD (through lib.sh), run it with stdout to OUT (written whole or
# not at all) and stderr kept in OUT.log (fairseq's log: timing, SpecDec acceptance).
decode() {
  local out=$1; shift
  DRY_RUN=1 run_to "$out" "$@"
  [ "${DRY_RUN:-0}" = 1 ] && return 0
  if "$@" > "$out.tmp" 2> "$out.log"; then
    mv "$out.tmp" "$out"
  else
    tail -n 40 "$out.log" >&2
    die "decoding failed; full log in $out.log"
  fi
}

# average DIR "KIND N": average the last N (update|epoch) checkpoints of DIR into DIR/averaged.pt
average() {
  local dir=$1 kind=${2% *} n=${2#* }
  case $kind in update|epoch) ;; *) die "checkpoint averaging: kind must be update or epoch, got '$2'" ;; esac
  is_done "average the last $n $kind checkpoints of $dir" "$dir/averaged.pt" || run "$PYTHON" \
    "$HERE/average_checkpoints.py" --inputs "$dir" "--num-$kind-checkpoints" "$n" --output "$dir/averaged.pt"
}

# Several nodes: every node runs the training stages with the same --gpus (all GPUs of all
# nodes) and --train-flags "--distributed-init-method tcp://HOST:PORT --distributed-rank R",
# R = the rank of the node's first GPU. Only the first node (R = 0) averages the checkpoints;
# the other stages run on one machine.
FIRST_NODE=1
if [[ " $TRAIN_FLAGS " =~ --distributed-rank[=\ ]+([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -gt 0 ]; then
  FIRST_NODE=0
  for s in ${STAGES//,/ }; do
    case $s in train-verifier|train-drafter) ;; *) die "stage $s: run it on the first node (--distributed-rank 0) or on one machine" ;; esac
  done
fi
after_training() {  # after_training DIR "KIND N"
  if [ "$FIRST_NODE" = 1 ]; then average "$@"; else log "averaging $1: left to the first node"; fi
}

# the args file must train the kind asked for: the decoding flags above depend on it
DRAFTER_ARCH=$(arg_value "$DRAFTER_ARGS" --arch)
case $DRAFTER_KIND:$DRAFTER_ARCH in
  chain:specdec_drafter_chain*) ;;
  spec-drafter:specdec_drafter_chain*|spec-drafter:specdec_drafter_feature*) kind_mismatch=1 ;;
  spec-drafter:specdec_drafter|spec-drafter:specdec_drafter_*) ;;
  *) kind_mismatch=1 ;;
esac
[ -z "${kind_mismatch:-}" ] || die "$DRAFTER_ARGS: --arch '$DRAFTER_ARCH' is not $DRAFTER_WHAT" \
  "(--drafter $DRAFTER_KIND wants $DRAFTER_ARCHS)"

# ---------------------------------------------------------------- layout
CORPUS_DIR=$DATA_ROOT/$CORPUS
RAW=$CORPUS_DIR/raw
PREP=$CORPUS_DIR/prep
DISTILL=$CORPUS_DIR/distill.$SRC-$TGT
RUN=$CKPT_ROOT/$PAIR
VERIFIER_DIR=$RUN/verifier VERIFIER=$RUN/verifier/averaged.pt
DRAFTER_DIR=$RUN/drafter_$DRAFTER_TAG DRAFTER=$RUN/drafter_$DRAFTER_TAG/averaged.pt
# k is trained from the drafter's args file and recorded in its checkpoint: decoding reads it there
BLOCK_SIZE=$(arg_value "$DRAFTER_ARGS" --block-size)

log "SpecDec recipe: $PAIR ($SRC -> $TGT), stages: $STAGES"
log "config $CONFIG_DIR | data $CORPUS_DIR | run $RUN | GPUs: $LOCAL_GPUS here, training on $GPUS$DRY_NOTE"
other=spec-drafter; [ "$DRAFTER_KIND" = chain ] || other=chain
log "drafter: --drafter $DRAFTER_KIND, $DRAFTER_WHAT (--arch $DRAFTER_ARCH, k=${BLOCK_SIZE:-the default})," \
  "trained from $DRAFTER_ARGS into $DRAFTER_DIR${DRAFTER_DRAFT_FLAGS:+, decoded with $DRAFTER_DRAFT_FLAGS}" \
  "(--drafter $other for the other kind)"
start=$SECONDS

# ---------------------------------------------------------------- stages
if want download; then
  if [ "${RECIPE_SKIP_DOWNLOAD:-0}" = 1 ]; then
    log "download: skipped (RECIPE_SKIP_DOWNLOAD=1)"
  else
    all_done "download $CORPUS" "$RAW"/{train,valid,test}.{$L1,$L2} || run "$PYTHON" "$HERE/download_wmt.py" \
      --pair "$CORPUS" --raw "$RAW" --downloads "$CORPUS_DIR/downloads" ${MIRROR:+--mirror "$MIRROR"}
  fi
fi

if want prepare; then
  need "$RAW/train.$L2" download
  is_done "prepare $CORPUS (tokenize, clean, $BPE_MERGES joint BPE merges, binarize)" "$PREP/bin/dict.$L2.txt" \
    || run bash "$REPO_ROOT/scripts/prepare_bitext.sh" "$RAW" "$PREP" "$L1" "$L2" "$BPE_MERGES" "$MAX_LEN" "$MAX_RATIO"
fi

if want train-verifier; then
  need "$PREP/bin/dict.$TGT.txt" prepare
  check_fp16 "$CONFIG_DIR/verifier.args"
  flags=$(train_flags "$CONFIG_DIR/verifier.args" "${VERIFIER_TOKENS_PER_UPDATE:-}")
  # shellcheck disable=SC2046,SC2086
  is_done "train the verifier" "$VERIFIER_DIR/train.done" || run bash "$REPO_ROOT/scripts/train_verifier.sh" \
    "$PREP/bin" "$VERIFIER_DIR" "$CONFIG_DIR/verifier.args" $flags
  after_training "$VERIFIER_DIR" "$VERIFIER_AVERAGE"
fi

if want distill; then
  need "$VERIFIER" train-verifier
  # shellcheck disable=SC2086
  is_done "distill the training set with the verifier (beam $DISTILL_BEAM)" "$DISTILL/bin/dict.$TGT.txt" || run env \
    BEAM="$DISTILL_BEAM" SHARDS="$DISTILL_SHARDS" MAX_TOKENS="$DISTILL_MAX_TOKENS" \
    GEN_FLAGS="$(echo $KEEP_ALL $FP16_GEN $DISTILL_GEN_FLAGS)" \
    bash "$REPO_ROOT/scripts/distill.sh" "$PREP/bin" "$PREP/bpe" "$VERIFIER" "$DISTILL" "$SRC" "$TGT"
fi

if want train-drafter; then
  need "$DISTILL/bin/dict.$TGT.txt" distill
  need "$VERIFIER" train-verifier
  check_fp16 "$DRAFTER_ARGS"
  flags=$(train_flags "$DRAFTER_ARGS" "$DRAFTER_TOKENS")
  # shellcheck disable=SC2086
  is_done "train $DRAFTER_WHAT ($DRAFTER_ARCH, k=${BLOCK_SIZE:-the default}, started from the verifier)" \
    "$DRAFTER_DIR/train.done" || run bash \
    "$REPO_ROOT/scripts/train_drafter.sh" "$DISTILL/bin" "$DRAFTER_DIR" "$VERIFIER" "$DRAFTER_ARGS" $flags
  after_training "$DRAFTER_DIR" "$DRAFTER_AVERAGE"
fi

if want evaluate; then
  need "$VERIFIER" train-verifier
  need "$DRAFTER" train-drafter
  # the verifier's own decodings in RUN/eval, shared by both drafter kinds; SpecDec's in RUN/eval/KIND
  EVAL=$RUN/eval EVAL_SPECDEC=$RUN/eval/$DRAFTER_TAG
  [ -d "$EVAL_SPECDEC" ] || run mkdir -p "$EVAL_SPECDEC"
  # shellcheck disable=SC2046,SC2086
  gen=(fairseq-generate "$PREP/bin" --user-dir "$USER_DIR" --gen-subset test --source-lang "$SRC" --target-lang "$TGT"
       --path "$VERIFIER" --remove-bpe $KEEP_ALL $(read_args "$CONFIG_DIR/generate.args") $FP16_GEN)
  # shellcheck disable=SC2206
  specdec=(--task specdec_translation --drafter-path "$DRAFTER" --beam 1 $DRAFTER_DRAFT_FLAGS)
  is_done "decode the test set: verifier greedy" "$EVAL/greedy.txt" || decode "$EVAL/greedy.txt" "${gen[@]}" --beam 1
  is_done "decode the test set: verifier beam 5" "$EVAL/beam5.txt" || decode "$EVAL/beam5.txt" "${gen[@]}" --beam 5
  is_done "decode the test set: SpecDec with $DRAFTER_WHAT (beta=1)" "$EVAL_SPECDEC/specdec.txt" \
    || decode "$EVAL_SPECDEC/specdec.txt" "${gen[@]}" "${specdec[@]}" --beta 1
  is_done "decode the test set: SpecDec relaxed with $DRAFTER_WHAT (beta=$RELAXED_BETA, tau=$RELAXED_TAU)" \
    "$EVAL_SPECDEC/specdec_relaxed.txt" || decode "$EVAL_SPECDEC/specdec_relaxed.txt" "${gen[@]}" "${specdec[@]}" \
    --beta "$RELAXED_BETA" --tau "$RELAXED_TAU"
  compound=()
  [ "$TGT" = de ] && compound=(--compound-split)
  is_done "score the test set" "$EVAL_SPECDEC/results.md" || run "$PYTHON" "$HERE/score.py" \
    --row "greedy=$EVAL/greedy.txt" --row "beam5=$EVAL/beam5.txt" --row "specdec=$EVAL_SPECDEC/specdec.txt" \
    --row "specdec_relaxed=$EVAL_SPECDEC/specdec_relaxed.txt" --beta "$RELAXED_BETA" \
    --tau "$RELAXED_TAU" --tok-ref "$PREP/tok/test.$TGT" --raw-ref "$RAW/test.$TGT" --lang "$TGT" \
    ${compound[@]+"${compound[@]}"} --title "$PAIR, SpecDec with $DRAFTER_WHAT${DRAFTER_DRAFT_FLAGS:+ ($DRAFTER_DRAFT_FLAGS)}" \
    --out-md "$EVAL_SPECDEC/results.md" --out-json "$EVAL_SPECDEC/results.json"
  [ "${DRY_RUN:-0}" = 1 ] || cat "$EVAL_SPECDEC/results.md"
fi

if want benchmark; then
  need "$VERIFIER" train-verifier
  need "$DRAFTER" train-drafter
  BENCH=$RUN/benchmark_$DRAFTER_TAG
  # shellcheck disable=SC2086
  is_done "benchmark (batch sizes $BENCH_BATCH_SIZES)" "$BENCH/benchmark.json" || {
    run rm -rf "$BENCH.tmp"
    run mkdir -p "$BENCH.tmp"
    run_to "$BENCH.tmp/stdout.md" "$PYTHON" -m fairseq_specdec.benchmark --data "$PREP/bin" \
      --source-lang "$SRC" --target-lang "$TGT" --verifier "$VERIFIER" --drafter "$DRAFTER" \
      --batch-sizes "$BENCH_BATCH_SIZES" --beta "$RELAXED_BETA" --tau "$RELAXED_TAU" \
      --modes greedy,beam5,specdec,specdec_relaxed $DRAFTER_DRAFT_FLAGS $BENCH_DEVICE \
      ${BENCH_MAX_SENTENCES:+--max-sentences "$BENCH_MAX_SENTENCES"} ${BENCH_FLAGS:-} --out-dir "$BENCH.tmp"
    run mv "$BENCH.tmp" "$BENCH"
  }
  if [ "${DRY_RUN:-0}" != 1 ]; then
    if [ -f "$BENCH/table.md" ]; then cat "$BENCH/table.md"; else cat "$BENCH/stdout.md" 2>/dev/null || true; fi
  fi
fi

log "finished ($STAGES) in $((SECONDS - start)) s; results in $RUN"
