"""The README's main command, scripts/demo.sh, end to end on a small slice: every step
produces its outputs, the final table has the four decoding modes, and a second run
resumes by skipping every finished step. And score_verifier.sh counts the outputs that the
length limit cut."""
import json
import os
import re
import subprocess

from conftest import REPO

# 4-update models rarely emit eos: most sentences run to the length limit (configs/length_limits.env),
# so each decoding step (BLEU, distillation, benchmark) is kept to a handful of sentences
SMALL = {
    "DEMO_TRAIN": "300", "DEMO_VALID": "20", "DEMO_TEST": "20", "DEMO_BPE_MERGES": "300",
    "DEMO_VERIFIER_UPDATES": "4", "DEMO_DRAFTER_UPDATES": "4", "DEMO_BENCH_SENTENCES": "4",
    "DEMO_BENCH_BATCH_SIZES": "1,3",
}


def run_demo(work):
    env = {**os.environ, **SMALL, "WORK": str(work), "SKIP_INSTALL": "1", "OMP_NUM_THREADS": "1",
           "WORKERS": "1"}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh")], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"demo failed\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}"
    return proc


def test_demo_pipeline_runs_and_resumes(tmp_path):
    work = tmp_path / "demo"
    first = run_demo(work)
    for path in ["raw/train.de", "prep/bin/dict.de.txt", "verifier/checkpoint_last.pt", "verifier/averaged.pt",
                 "verifier_bleu.txt",
                 "distill/bin/train.en-de.de.bin", "drafter/checkpoint_last.pt", "results/benchmark.json",
                 "results/table.md", "step_times.txt"]:
        assert (work / path).exists(), path
    bleu = (work / "verifier_bleu.txt").read_text()
    for beam in (1, 5):
        hit, total = re.search(rf"verifier beam {beam}: [\d.]+ \((\d+) of (\d+) hit the length limit\)", bleu).groups()
        assert int(total) == 20 and 0 < int(hit) <= 20  # the 4-update verifier seldom stops by itself
    table = (work / "results" / "table.md").read_text()
    for mode in ("| greedy |", "| greedy_lean |", "| beam5 |", "| specdec |", "| specdec_fixed |", "| specdec_relaxed |",
                 "| specdec_ngram |", "| specdec_combined |"):
        assert mode in table and mode in first.stdout
    report = json.loads((work / "results" / "benchmark.json").read_text())
    modes = ("greedy", "greedy_lean", "beam5", "specdec", "specdec_fixed", "specdec_relaxed", "specdec_ngram",
             "specdec_combined",
             "specdec_oracle",
             "specdec_oracle_free")
    assert {(r["mode"], r["batch"]) for r in report["rows"]} >= {(m, b) for m in modes for b in (1, 3)}
    limits = dict(re.findall(r"MAX_LEN_([AB]):=([\d.]+)", (REPO / "configs" / "length_limits.env").read_text()))
    assert (report["config"]["max_len_a"], report["config"]["max_len_b"]) == (float(limits["A"]), int(limits["B"]))
    assert all(0 <= r["at_length_limit"] <= 4 for r in report["rows"])
    assert all(r["at_length_limit"] > 0 for r in report["rows"] if r["mode"] == "greedy")
    steps = (work / "step_times.txt").read_text()
    assert all(step in steps for step in ("install", "3 verifier", "6 drafter", "7 benchmark"))
    second = run_demo(work)
    assert second.stderr.count("done already") >= 6  # corpus, prep steps, training, scoring, benchmark
    assert "fairseq-train" not in second.stderr.replace("done already", "")


def test_score_verifier_counts_outputs_cut_by_the_length_limit(demo_data, tiny_verifier):
    """With room for 3 tokens, every test translation (none is that short) is cut by the limit."""
    env = {**os.environ, "MAX_LEN_A": "0", "MAX_LEN_B": "3", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "score_verifier.sh"), str(demo_data["bin"]),
                           str(tiny_verifier), str(demo_data["raw"] / "test.de"), "de"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for beam in (1, 5):
        assert re.search(rf"^verifier beam {beam}: [\d.]+ \(200 of 200 hit the length limit\)$", proc.stdout, re.M), \
            proc.stdout
