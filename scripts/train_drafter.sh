#!/usr/bin/env bash
# Train a drafter (task specdec_translation; its kind, criterion and k come from CONFIG.args:
# the chain drafter, the Spec-Drafter, ...) on distilled data, started from the verifier
# (--init-from-verifier: its encoder and embeddings, and for the chain and feature drafters
# also the teacher whose states they learn). Resumable like fairseq-train itself.
#
# usage: train_drafter.sh DATA_BIN SAVE_DIR VERIFIER_CKPT [CONFIG.args] [extra flags...]
#   VERIFIER_CKPT may be "none" to start from scratch.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DATA=$1 SAVE=$2 VERIFIER=$3 CONFIG=${4:-$REPO_ROOT/configs/drafter_demo.args}
shift $(( $# < 4 ? $# : 4 ))

is_done "train drafter ($CONFIG)" "$SAVE/train.done" && exit 0
init=()
[ "$VERIFIER" = none ] || init=(--init-from-verifier "$VERIFIER")
run mkdir -p "$SAVE"
# shellcheck disable=SC2046
run ${FAIRSEQ_TRAIN:-fairseq-train} "$DATA" --user-dir "$USER_DIR" $(read_args "$CONFIG") "${init[@]}" --save-dir "$SAVE" "$@"
run touch "$SAVE/train.done"
