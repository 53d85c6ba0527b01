# shellcheck shell=bash
# Helpers shared by the recipes (source it). Every command is printed before it runs;
# a step whose output exists is skipped; outputs are written under a temporary name and
# moved into place only when complete, so a half-written file never counts as done.
# DRY_RUN=1 prints the commands without running them.

log() { printf '\n==> %s\n' "$*" >&2; }

# print arguments so that the printed command can be pasted back into a shell
show_command() {
  local a q="'"
  printf '+' >&2
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_,.:/=@%+-]+$ ]]; then printf ' %s' "$a" >&2
    else printf " '%s'" "${a//$q/$q\\$q$q}" >&2; fi
  done
}

run() {
  show_command "$@"; printf '\n' >&2
  if [ "${DRY_RUN:-0}" != 1 ]; then "$@"; fi
}

# run_to OUT CMD...: run CMD with stdout to OUT.tmp, then move it to OUT.
run_to() {
  local out=$1; shift
  show_command "$@"; printf ' > %s\n' "$out" >&2
  if [ "${DRY_RUN:-0}" != 1 ]; then "$@" > "$out.tmp" && mv "$out.tmp" "$out"; fi
}

# is_done NAME OUT: true (and a message) when OUT already exists, so the step is skipped.
is_done() {
  if [ -e "$2" ]; then log "$1: done already ($2 exists), skipping"; return 0; fi
  log "$1"; return 1
}

# read_args FILE: print the flags in a configs/*.args file (comments and blank lines dropped).
read_args() {
  grep -v '^[[:space:]]*#' "$1" | tr '\n' ' '
}

# Python used by the recipes; override with PYTHON=...
PYTHON=${PYTHON:-python3}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
USER_DIR="$REPO_ROOT/fairseq_specdec"
# MAX_LEN_A, MAX_LEN_B: the scripts' length limits
source "$REPO_ROOT/configs/length_limits.env"
