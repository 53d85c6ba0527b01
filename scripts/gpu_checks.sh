#!/usr/bin/env bash
# The GPU checks in one call on an offline CUDA machine (Python 3.12 with torch, no network):
# the CUDA tests (their fixtures are trained there), fairseq-generate --cuda-graphs against
# --beam 1, the benchmark with and without CUDA graphs, and the reduced-precision rule on the
# demo models in fp16 and bf16 (stage precision: identical share and largest top-2 gap). Each stage has its own time limit
# and writes its log to OUT; a failed stage does not stop the next.
#
# Prepared on a machine with the package index, from the repository root:
#   bash ../shared/gpu/fetch_wheels.sh           # fairseq & co. into .whl/; for the tests also
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 -d .whl pytest pluggy iniconfig packaging pygments click joblib regex tqdm mock
#   python ../shared/gpu/pack_checkpoint.py work/demo/verifier/averaged.pt work/gpu/verifier.pt
#   python ../shared/gpu/pack_checkpoint.py work/demo/drafter/checkpoint_last.pt work/gpu/drafter.pt
#   cp -r work/demo/prep/bin work/gpu/bin
# There:  bash scripts/gpu_checks.sh work/gpu "$OUT"   (STAGES="tests generate bench" by default)
set -uo pipefail
DIR=${1:?usage: gpu_checks.sh DIR OUT}
OUT=${2:?usage: gpu_checks.sh DIR OUT}
STAGES=${STAGES:-tests generate bench precision}
N=${BENCH_SENTENCES:-150}
mkdir -p "$OUT"
stage() { echo "$(date +%T) $*" | tee -a "$OUT/stages.txt"; }

if [ -d .whl ]; then
  timeout 120 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl > "$OUT/install.log" 2>&1
  export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1

if [[ " $STAGES " == *" tests "* ]]; then
  timeout 420 python3 -m pytest -x -q -p no:cacheprovider -rs tests/test_static_rows.py \
    tests/test_speculative_lossless.py tests/test_precision.py -k "cuda or captured" > "$OUT/pytest.log" 2>&1
  stage "tests rc $? ($(tail -1 "$OUT/pytest.log"))"
fi

if [[ " $STAGES " == *" generate "* ]]; then
  gen=(python3 -m fairseq_cli.generate "$DIR/bin" --user-dir fairseq_specdec --task specdec_translation
       --path "$DIR/verifier.pt" --gen-subset test --beam 1 --batch-size 32 --max-len-a 1.2 --max-len-b 10)
  timeout 120 "${gen[@]}" > "$OUT/generate_beam1.txt" 2> "$OUT/generate_beam1.log"; stage "generate --beam 1 rc $?"
  timeout 120 "${gen[@]}" --drafter-path "$DIR/drafter.pt" --cuda-graphs > "$OUT/generate_graphs.txt" \
    2> "$OUT/generate_graphs.log"; stage "generate --cuda-graphs rc $?"
  for f in beam1 graphs; do grep '^H' "$OUT/generate_$f.txt" | sort -V | cut -f1,3 > "$OUT/hypotheses_$f.txt"; done
  if cmp -s "$OUT/hypotheses_beam1.txt" "$OUT/hypotheses_graphs.txt"; then
    stage "generate: identical ($(wc -l < "$OUT/hypotheses_beam1.txt") hypotheses)"
  else
    stage "generate: DIFFERENT hypotheses"
  fi
fi

if [[ " $STAGES " == *" bench "* ]]; then
  bench=(python3 -m fairseq_specdec.benchmark --data "$DIR/bin" --verifier "$DIR/verifier.pt" --drafter "$DIR/drafter.pt"
         --device cuda --batch-sizes 1,8,32 --bounds --repeats 1 --warmup 1 --max-sentences "$N" --ctranslate2 off
         --max-len-a 1.2 --max-len-b 10 --no-plots --modes greedy,greedy_lean,beam5,specdec,specdec_fixed)
  timeout 240 "${bench[@]}" --cuda-graphs --out-dir "$OUT/bench_graphs" > "$OUT/bench_graphs.log" 2>&1
  stage "benchmark --cuda-graphs rc $?"
  timeout 240 "${bench[@]}" --out-dir "$OUT/bench_eager" > "$OUT/bench_eager.log" 2>&1
  stage "benchmark without graphs rc $?"
fi

if [[ " $STAGES " == *" precision "* ]]; then
  for dtype in fp16 bf16; do
    timeout 120 python3 scripts/precision_check.py --data "$DIR/bin" --verifier "$DIR/verifier.pt" \
      --drafter "$DIR/drafter.pt" --dtype "$dtype" --device cuda --max-sentences 1000 > "$OUT/precision_$dtype.txt" 2>&1
    stage "precision $dtype rc $? ($(tail -1 "$OUT/precision_$dtype.txt"))"
  done
fi
