"""The real-shape timing script's pieces that need no model: the synthetic corpus keeps the
real lengths, the summary's arithmetic, the flags (python -m fairseq_specdec.benchmark.shapes)."""
import pytest

from fairseq_specdec.benchmark import shapes


def test_synthetic_corpus_keeps_the_real_lengths(tmp_path):
    lengths = [3, 1, 12, 7]
    dictionary = shapes.write_corpus(tmp_path, lengths, train=50)
    symbols = {line.split()[0] for line in dictionary.read_text().splitlines()}
    assert len(symbols) == shapes.VOCAB - 4  # fairseq adds its four special symbols
    for side in ("src", "tgt"):
        test = (tmp_path / f"test.{side}").read_text().splitlines()
        assert [len(line.split()) for line in test] == lengths
        assert all(token in symbols for line in test for token in line.split())
    train = (tmp_path / "train.tgt").read_text().splitlines()
    assert len(train) == 50 and {len(line.split()) for line in train} <= set(lengths)


def test_real_lengths_skip_empty_lines(tmp_path):
    path = tmp_path / "test.fr"
    path.write_text("a b c\n\nd\n")
    assert shapes.real_lengths(path) == [3, 1]
    path.write_text("\n\n")
    with pytest.raises(SystemExit, match="no non-empty line"):
        shapes.real_lengths(path)


def row(mode, median, **extra):
    return {"mode": mode, "median_s": median, "sentences": 10, "x_greedy": 2.0 / median,
            "identical_to_greedy": True, **extra}


def test_summary_splits_the_drafters_cost_and_projects_the_real_acceptance():
    rows = {"greedy": row("greedy", 2.0), "greedy_lean": row("greedy_lean", 1.6),
            "specdec_oracle": row("specdec_oracle", 1.0, iterations_per_sentence=5.0, tok_per_iter=6.0),
            "specdec_oracle_free": row("specdec_oracle_free", 0.5, iterations_per_sentence=5.0, tok_per_iter=6.0)}
    line = shapes.summarize("chain", 1, rows, {"chain": 3.0})
    assert line["x_paid"] == 2.0 and line["x_free"] == 4.0 and line["x_lean"] == 1.25
    assert line["iteration_ms"] == pytest.approx(20.0)  # 1 s over 50 iterations
    assert line["drafter_ms"] == pytest.approx(10.0)  # (1.0 - 0.5) s over 50 iterations
    # 3 tokens per iteration instead of 6: twice the iterations at the same cost
    assert line["projected_x_greedy"] == pytest.approx(1.0)
    assert "projected_x_greedy" not in shapes.summarize("feature", 1, rows, {"chain": 3.0})
    assert line["drafter_share"] == pytest.approx(0.5)
    assert "| chain | 1 | 1.25 | 2.00 / 4.00 | 6.00 | 50% | 10.0 | 1.00 |" in shapes.table([line], "base", 6)


def test_flags():
    assert shapes.parse_accept(["chain=3.76"]) == {"chain": 3.76}
    with pytest.raises(SystemExit, match="KIND=TOKENS_PER_ITERATION"):
        shapes.parse_accept(["chain"])
    assert shapes.widths("big")[:2] == ["--encoder-embed-dim", "1024"]
    with pytest.raises(SystemExit):
        shapes.main(["--size", "base", "--lengths", "x", "--work", "w", "--drafters", "chain,turbo"])
