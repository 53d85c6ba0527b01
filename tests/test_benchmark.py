"""Tests for the benchmark (python -m fairseq_specdec.benchmark) on the tiny fixtures."""
import contextlib
import importlib.util
import io
import json
import math

import pytest
import torch

from conftest import REPO
from fairseq_specdec.benchmark import cli as benchmark
from fairseq_specdec.benchmark.modes import count_at_limit, length_limits

HAVE_CT2 = importlib.util.find_spec("ctranslate2") is not None
FAIRSEQ_MODES = ["greedy", "beam5", "specdec", "specdec_fixed", "specdec_relaxed"]
CT2_MODES = ["ct2_greedy", "ct2_beam5"]


@pytest.fixture(scope="module")
def bench_run(demo_data, tiny_verifier, tiny_drafter, tmp_path_factory):
    """One benchmark run shared by the tests below: (out dir, report, stdout)."""
    pytest.importorskip("matplotlib")  # the plots; in the package's test/bench extras
    out = tmp_path_factory.mktemp("bench")
    argv = ["--data", str(demo_data["bin"]), "--verifier", str(tiny_verifier), "--drafter", str(tiny_drafter),
            "--max-sentences", "24", "--batch-sizes", "1,4", "--repeats", "1", "--warmup", "1",
            "--threads", "1", "--profile", "--bounds", "--out-dir", str(out),
            "--ctranslate2", "on" if HAVE_CT2 else "off"]
    buf = io.StringIO()  # capsys is function-scoped
    with contextlib.redirect_stdout(buf):
        report = benchmark.main(argv)
    return out, report, buf.getvalue()


def _rows(report, modes=None):
    return [r for r in report["rows"] if modes is None or r["mode"] in modes]


def test_outputs_written(bench_run):
    out, report, _ = bench_run
    data = json.loads((out / "benchmark.json").read_text())
    assert data["data"]["sentences"] == 24
    assert {(r["mode"], r["batch"]) for r in data["rows"]} >= {(m, b) for m in FAIRSEQ_MODES for b in (1, 4)}
    for key in ("cpu", "torch", "fairseq", "torch_threads", "device_name"):
        assert data["machine"][key] not in (None, "")
    assert data["machine"]["torch_threads"] == 1
    assert data["command"][0] == "specdec-benchmark"
    assert set(data["files"]) == {"benchmark.json", "table.md", "speedup.png", "accepted_hist.png"}
    assert "| specdec | 1 |" in (out / "table.md").read_text()
    for png in ("speedup.png", "accepted_hist.png"):
        path = out / png
        assert path.is_file() and path.stat().st_size > 1000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_are_sane(bench_run):
    _, report, _ = bench_run
    for r in _rows(report):
        assert 0.0 <= r["bleu"] <= 100.0
        assert r["sent_per_s"] > 0 and math.isfinite(r["sent_per_s"])
        for key in ("x_greedy", "x_beam5"):
            assert r[key] > 0 and math.isfinite(r[key]), (r["mode"], r["batch"], key)
        assert (r["latency_ms"] is not None) == (r["batch"] == 1)
        assert r["peak_mb"] > 0
        assert 0 <= r["at_length_limit"] <= r["sentences"]
    for r in _rows(report, ["greedy"]):
        assert r["x_greedy"] == pytest.approx(1.0)
    for r in _rows(report, ["specdec", "specdec_fixed", "specdec_relaxed"]):
        assert r["tok_per_iter"] >= 1.0
        assert 0 <= r["wasted_per_iter"] <= r["drafts_per_iter"] <= 5  # k = 5, the drafter's
        assert r["tok_per_iter"] == pytest.approx(1 + r["drafts_per_iter"] - r["wasted_per_iter"], abs=0.35)
        assert r["passes"] == 1 and sum(r["accepted_histogram"]) > 0  # the warm-up pass is not counted
        assert set(r["seconds_per_pass"]) >= {"drafter", "verifier", "other"}


def test_fixed_blocks_draft_k_every_iteration_adaptive_ones_start_greedy(bench_run):
    _, report, _ = bench_run
    for r in _rows(report, ["specdec_fixed"]):
        assert r["drafts_per_iter"] == 5 and r["greedy_share"] == 0
    for r in _rows(report, ["specdec"]):  # a batch size's first iteration measures a greedy step
        assert 0 < r["greedy_share"] < 1 and r["drafts_per_iter"] <= 5


def test_lossless_specdec_identical_to_greedy(bench_run):
    _, report, _ = bench_run
    rows = _rows(report, ["specdec", "specdec_fixed"])
    assert len(rows) == 4
    for r in rows:
        assert r["identical_to_greedy"] is True and r["differing_from_greedy"] == 0
        greedy = next(g for g in _rows(report, ["greedy"]) if g["batch"] == r["batch"])
        assert r["bleu"] == pytest.approx(greedy["bleu"])
        assert r["at_length_limit"] == greedy["at_length_limit"]  # the same outputs, the same ones cut


def test_bounds_accept_every_draft(bench_run):
    """The oracle rows (--bounds): greedy's output drafted, so the output is greedy's and every
    iteration commits k+1 tokens or ends its sentence; drafting is free in the _free row."""
    _, report, _ = bench_run
    rows = _rows(report, ["specdec_oracle", "specdec_oracle_free"])
    assert {(r["mode"], r["batch"]) for r in rows} == {(m, b) for m in ("specdec_oracle", "specdec_oracle_free")
                                                       for b in (1, 4)}
    for r in rows:
        assert r["identical_to_greedy"] is True
        real = next(s for s in _rows(report, ["specdec"]) if s["batch"] == r["batch"])
        assert r["tok_per_iter"] > real["tok_per_iter"]
        assert r["iterations_per_sentence"] < real["iterations_per_sentence"]
        hist = r["accepted_histogram"]  # index n: iterations that accepted n drafts (k = 5, the drafter's)
        assert sum(hist[:5]) <= r["sentences"] * r["passes"]  # only a sentence's last iteration
    for r in _rows(report, ["specdec_oracle_free"]):
        if r["batch"] == 1:
            paid = next(s for s in _rows(report, ["specdec_oracle"]) if s["batch"] == 1)
            assert r["seconds_per_pass"]["drafter"] < 0.5 * paid["seconds_per_pass"]["drafter"]


def test_table_printed_with_all_modes(bench_run):
    _, report, stdout = bench_run
    header = next(line for line in stdout.splitlines() if line.startswith("| mode"))
    for col in ("BLEU", "sent/s", "ms/sent", "x greedy", "x beam5", "tok/iter", "drafts/iter", "wasted/iter",
                "greedy steps",
                "identical", "at len limit", "peak MB"):
        assert col in header
    table_rows = [line for line in stdout.splitlines() if line.startswith("| ") and "---" not in line]
    modes = FAIRSEQ_MODES + (CT2_MODES if HAVE_CT2 else [])
    for mode in modes:
        for batch in (1, 4):
            assert any(line.startswith(f"| {mode} | {batch} |") for line in table_rows), (mode, batch)
    assert "drafter %" in stdout  # --profile


def test_ctranslate2_peer(bench_run):
    if not HAVE_CT2:  # not importorskip: this process must never import ctranslate2
        pytest.skip("ctranslate2 is not installed")
    import os
    import sys

    out, report, text = bench_run
    peer = report["ctranslate2"]
    int8 = [m for m in ("ct2_greedy_int8", "ct2_greedy_int8_float32")
            if ("int8_float32" if m.endswith("float32") else "int8") in peer["supported_compute_types"]]
    rows = _rows(report, CT2_MODES + int8)
    assert {(r["mode"], r["batch"]) for r in rows} == {(m, b) for m in CT2_MODES + int8 for b in (1, 4)}
    assert report["machine"]["ctranslate2"] == peer["version"]
    assert peer["compute_types"]["ct2_greedy"] == "float32" and peer["threads"] == 1
    # timed in a process of its own where torch never ran, and never imported here
    assert peer["pid"] != os.getpid() and peer["torch_imported"] is False
    assert "ctranslate2" not in sys.modules
    assert f"in a process of its own (pid {peer['pid']}, torch never imported)" in text
    assert (out / "ct2_verifier" / "model.bin").is_file()
    # the same verifier, the same post-processing: CTranslate2's greedy search finds the same
    # translations as fairseq's, up to near-ties that other matrix kernels may break otherwise
    for r in _rows(report, ["ct2_greedy"]):
        assert r["differing_from_greedy"] <= r["sentences"] // 4


def test_length_limit_count():
    """fairseq's limit per batch (a x padded source length with eos + b, capped by the decoder's
    positions); an output with that many tokens before eos was cut by it."""
    batches = [{"id": torch.tensor([0, 1]), "net_input": {"src_tokens": torch.ones(2, 5, dtype=torch.long)}},
               {"id": torch.tensor([2]), "net_input": {"src_tokens": torch.ones(1, 40, dtype=torch.long)}}]
    limits = length_limits(batches, max_len_a=1.2, max_len_b=10, max_positions=50)
    assert limits == {0: 16, 1: 16, 2: 49}  # int(1.2 * 5 + 10); min(1.2 * 40 + 10, 50 - 1)
    eos = 2
    tokens = {0: [7] * 16 + [eos], 1: [7] * 15 + [eos], 2: [7] * 49 + [eos]}
    assert count_at_limit(tokens, limits) == 2


def test_default_length_limits_are_the_scripts():
    """One pair of values: the benchmark's defaults are those of configs/length_limits.env."""
    text = (REPO / "configs" / "length_limits.env").read_text()
    assert f'MAX_LEN_A:={benchmark.DEFAULT_MAX_LEN_A}}}' in text and f'MAX_LEN_B:={benchmark.DEFAULT_MAX_LEN_B}}}' in text
    args = benchmark.build_parser().parse_args(["--data", "d", "--verifier", "v"])
    assert (args.max_len_a, args.max_len_b) == (benchmark.DEFAULT_MAX_LEN_A, benchmark.DEFAULT_MAX_LEN_B)


# ---------------------------------------------------------------------- bad input
def test_batch_sizes_parse():
    assert benchmark.parse_batch_sizes("32,1,8") == [1, 8, 32]
    for bad in ("1,x", "", "0,4", "-1"):
        with pytest.raises(Exception, match="--batch-sizes"):
            benchmark.parse_batch_sizes(bad)


def test_bad_arguments_exit_with_usage(capsys, tmp_path):
    base = ["--data", str(tmp_path), "--verifier", str(tmp_path / "v.pt")]
    for extra, message in ((["--batch-sizes", "1,eight"], "--batch-sizes"),
                           (["--modes", "greedy,turbo"], "unknown mode")):
        with pytest.raises(SystemExit) as exc:
            benchmark.main(base + extra)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_missing_files_are_clear_errors(tmp_path, demo_data, tiny_verifier):
    data, verifier = str(demo_data["bin"]), str(tiny_verifier)
    cases = [
        (["--data", str(tmp_path / "nope"), "--verifier", verifier], "no such directory"),
        (["--data", data, "--verifier", str(tmp_path / "v.pt")], "--verifier"),
        (["--data", data, "--verifier", verifier], "--drafter is required"),
        (["--data", data, "--verifier", verifier, "--drafter", str(tmp_path / "d.pt")], "--drafter"),
        (["--data", data, "--verifier", verifier, "--modes", "greedy", "--subset", "nosuch"], "--subset"),
        (["--data", data, "--verifier", verifier, "--modes", "greedy", "-s", "fr", "-t", "de"], "dict.fr.txt"),
        (["--data", data, "--verifier", verifier, "--modes", "greedy", "--draft-vocab", "-1"], "--draft-vocab"),
        (["--data", data, "--verifier", verifier, "--modes", "greedy", "--cuda-graphs"], "--cuda-graphs needs"),
        (["--data", data, "--verifier", verifier, "--modes", "greedy", "--tau", "-1"], "--tau must be >= 0"),
    ]
    for argv, message in cases:
        with pytest.raises(benchmark.BenchmarkError, match=message):
            benchmark.main(argv)


def test_cli_main_reports_errors_without_traceback(monkeypatch, tmp_path):
    monkeypatch.setattr("sys.argv", ["specdec-benchmark", "--data", str(tmp_path / "nope"), "--verifier", "v.pt"])
    with pytest.raises(SystemExit) as exc:
        benchmark.cli_main()
    assert "specdec-benchmark: error:" in str(exc.value.code) and "no such directory" in str(exc.value.code)


def test_block_size_above_the_feature_drafters_maximum(demo_data, tiny_verifier, feature_drafter):
    """Refused when the drafter loads, before any mode runs (it used to fail mid-decoding)."""
    argv = ["--data", str(demo_data["bin"]), "--verifier", str(tiny_verifier), "--drafter", str(feature_drafter),
            "--modes", "specdec", "--block-size", "40", "--max-sentences", "2", "--batch-sizes", "1"]
    with pytest.raises(benchmark.BenchmarkError, match="--block-size 40 exceeds this feature drafter's "
                                                      "--max-block-size 32"):
        benchmark.main(argv)


def test_cli_main_reports_a_bad_drafter_in_one_line(monkeypatch, demo_data, tiny_verifier):
    """A checkpoint that is no drafter ends the command with one line, not a traceback."""
    monkeypatch.setattr("sys.argv", ["specdec-benchmark", "--data", str(demo_data["bin"]), "--verifier",
                                     str(tiny_verifier), "--drafter", str(tiny_verifier), "--modes", "specdec"])
    with pytest.raises(SystemExit) as exc:
        benchmark.cli_main()
    message = str(exc.value.code)
    assert message.startswith("specdec-benchmark: error:") and "not a Spec-Drafter" in message
    assert "\n" not in message


def test_sampling_modes(demo_data, tiny_verifier, tiny_drafter):
    """fairseq's top-k sampling and SpecDec's speculative sampling: rows with BLEU and SpecDec's
    tokens per iteration, and no identity claim against greedy (samples differ by design)."""
    argv = ["--data", str(demo_data["bin"]), "--verifier", str(tiny_verifier), "--drafter", str(tiny_drafter),
            "--modes", "greedy,sample_topk,specdec_sample_topk", "--max-sentences", "8", "--batch-sizes", "1",
            "--repeats", "2", "--warmup", "0", "--threads", "1", "--quiet"]
    with contextlib.redirect_stdout(io.StringIO()):
        report = benchmark.main(argv)
    rows = {r["mode"]: r for r in report["rows"]}
    for mode in ("sample_topk", "specdec_sample_topk"):
        assert rows[mode]["identical_to_greedy"] is None and math.isfinite(rows[mode]["bleu"])
    assert rows["specdec_sample_topk"]["tok_per_iter"] >= 1.0
    assert rows["sample_topk"]["tok_per_iter"] is None
