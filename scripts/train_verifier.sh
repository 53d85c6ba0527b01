#!/usr/bin/env bash
# Train the verifier: a stock fairseq Transformer (--task translation), nothing plugin-specific.
# The plugin is loaded only so that torch >= 2.6 can reload checkpoints when training resumes.
# Resumable: fairseq-train continues from SAVE/checkpoint_last.pt; a finished run is skipped.
#
# usage: train_verifier.sh DATA_BIN SAVE_DIR [CONFIG.args] [extra fairseq-train flags...]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DATA=$1 SAVE=$2 CONFIG=${3:-$REPO_ROOT/configs/verifier_demo.args}
shift $(( $# < 3 ? $# : 3 ))

is_done "train verifier ($CONFIG)" "$SAVE/train.done" && exit 0
run mkdir -p "$SAVE"
# shellcheck disable=SC2046
run ${FAIRSEQ_TRAIN:-fairseq-train} "$DATA" --user-dir "$USER_DIR" $(read_args "$CONFIG") --save-dir "$SAVE" "$@"
run touch "$SAVE/train.done"
