"""The model-free n-gram drafter: exact proposals on hand-built token lists, its
combination with a (scripted) NAR drafter, and lossless decoding with the n-gram
drafter alone and combined with the tiny trained drafter (in-process, CLI, benchmark)."""

import numpy as np
import pytest
import torch

from fairseq_specdec.drafting.ngram import CombinedDrafter, NGramDrafter, expected_accepted
from fairseq_specdec.drafting.ngram_index import NGramIndex, lookup_in_rows

PAD, EOS, UNK = 1, 2, 3


def drafter(sentences, order=4, prompt_lookup=True, vocab_size=50):
    index = NGramIndex(sentences, order=order, eos=EOS, vocab_size=vocab_size)
    return NGramDrafter(index, PAD, EOS, UNK, prompt_lookup=prompt_lookup)


def left_pad(prefixes):
    """Prefixes (BOS first) left-padded with pad, as ``CommittedTokens.prefix`` gives them."""
    width = max(len(p) for p in prefixes)
    return torch.tensor([[PAD] * (width - len(p)) + p for p in prefixes])


def draft(ngram, prefixes, k):
    tokens, conf = ngram.propose_with_confidence(len(prefixes), left_pad(prefixes), k)
    assert torch.equal(tokens, ngram.propose(len(prefixes), left_pad(prefixes), k))
    return tokens.tolist(), [[round(c, 4) for c in row] for row in conf.tolist()]


def lookup(index, prefixes):
    rows = left_pad(prefixes).numpy()
    found = index.lookup(rows, (rows != PAD).sum(1))
    return found.token.tolist(), found.confidence.round(4).tolist(), found.length.tolist()


# ---------------------------------------------------------------- the index
CORPUS = [[4, 5, 6, 2], [7, 5, 8, 2], [9, 5, 8, 2]]


def test_longest_context_wins_with_relative_frequency():
    index = NGramIndex(CORPUS, order=3, eos=EOS, vocab_size=50)
    tokens, conf, length = lookup(index, [[EOS, 4, 5], [EOS, 10, 5], [EOS, 7], [EOS]])
    assert tokens == [6, 8, 5, 4]  # (eos 4 5) -> 6; (5) -> 8 twice of 3; (eos 7) -> 5; (eos) -> 4
    assert conf == [1.0, 0.6667, 1.0, 0.3333]
    assert length == [3, 1, 2, 1]


def test_ties_go_to_the_smaller_token_id():
    index = NGramIndex([[4, 9, 2], [4, 6, 2], [4, 6, 2], [4, 9, 2]], order=2, eos=EOS)
    assert lookup(index, [[EOS, 4], [EOS]]) == ([6, 4], [0.5, 1.0], [2, 1])


def test_contexts_stay_inside_sentences():
    # "8" ends one sentence and "4" starts the next: no context joins them
    index = NGramIndex([[7, 8], [4, 5, 2]], order=3, eos=EOS)  # the first one's eos is appended
    assert lookup(index, [[EOS, 7, 8]]) == ([EOS], [1.0], [3])
    assert lookup(index, [[EOS]]) == ([4], [0.5], [1])  # sentences start with 7 and 4: a tie, to 4
    with pytest.raises(ValueError, match="order must be >= 1"):
        NGramIndex(CORPUS, order=0)


def test_index_of_a_corpus_sized_input_finds_its_ngrams():
    rng = np.random.default_rng(0)
    sentences = [rng.integers(4, 8000, size=rng.integers(5, 25)) for _ in range(40_000)]
    index = NGramIndex(sentences, order=4, eos=EOS, vocab_size=8000)
    first = sentences[0].tolist()
    assert lookup(index, [[EOS] + first[:3]])[0] == [first[3]]  # a seen 4-gram is found


def test_prompt_lookup_takes_the_last_earlier_occurrence():
    rows = left_pad([[EOS, 5, 7, 5, 8, 5], [EOS, 20, 21, 22, 20, 21], [EOS, 5]]).numpy()
    found = lookup_in_rows(rows, (rows != PAD).sum(1), order=4)
    assert found.token.tolist() == [8, 22, -1]  # 5 was followed by 7, then by 8
    assert found.confidence.tolist() == [0.5, 1.0, 0.0]
    assert found.length.tolist() == [1, 2, 0]


# ---------------------------------------------------------------- the drafter
def test_chained_drafts_end_with_eos():
    ngram = drafter(CORPUS, order=3)
    assert draft(ngram, [[EOS, 4]], 4) == ([[5, 6, EOS, EOS]], [[1.0, 1.0, 1.0, 0.0]])


def test_prefix_continuation_beats_a_shorter_or_equal_index_match():
    ngram = drafter([[21, 30, 2], [5, 6, 2]])
    # the row repeats "20 21 22 23": the index only knows (21) -> 30, the row knows (20 21) -> 22
    assert draft(ngram, [[EOS, 20, 21, 22, 23, 20, 21]], 4)[0] == [[22, 23, 20, 21]]
    # one token on both sides: the row's own continuation wins the tie
    assert draft(ngram, [[EOS, 5, 7, 5]], 1) == ([[7]], [[1.0]])
    assert draft(drafter([[21, 30, 2], [5, 6, 2]], prompt_lookup=False), [[EOS, 5, 7, 5]], 1) == ([[6]], [[1.0]])


def test_longer_index_match_beats_the_prefix():
    ngram = drafter([[8, 5, 6, 2]])
    # the row knows (5) -> 7; the index knows (8 5) -> 6
    assert draft(ngram, [[EOS, 9, 5, 7, 8, 5]], 1) == ([[6]], [[1.0]])


def test_no_match_drafts_filler_without_eos():
    ngram = drafter([[4, 5, 2]])
    tokens, conf = draft(ngram, [[EOS, 40]], 3)  # 40 never seen
    assert tokens == [[40, 40, 40]] and conf == [[0.0, 0.0, 0.0]]
    empty = drafter([])
    assert draft(empty, [[EOS]], 3) == ([[UNK, UNK, UNK]], [[0.0, 0.0, 0.0]])
    assert draft(empty, [[EOS, 60]], 2)[0] == [[60, 60]]  # outside the index's vocabulary: no crash


def test_batch_of_left_padded_rows_equals_one_by_one():
    ngram = drafter(CORPUS + [[4, 5, 6, 7, 8, 2]], order=3)
    prefixes = [[EOS], [EOS, 9, 5], [EOS, 4, 5, 6], [EOS, 40, 41, 40]]
    tokens, conf = draft(ngram, prefixes, 3)
    assert tokens == [[4, 5, 6], [8, EOS, EOS], [EOS, EOS, EOS], [41, 40, 41]]
    assert conf == [[0.5, 1.0, 1.0], [1.0, 1.0, 0.0], [0.5, 0.0, 0.0], [1.0, 1.0, 1.0]]
    for prefix, row_tokens, row_conf in zip(prefixes, tokens, conf):
        assert draft(ngram, [prefix], 3) == ([row_tokens], [row_conf])
    assert ngram.select(ngram.start({"src_tokens": torch.zeros(4, 3)}), torch.tensor([3, 1])) == 2


# ---------------------------------------------------------------- the combination
def test_expected_accepted_length():
    drafts = torch.tensor([[4, 5, 6], [4, EOS, 6]])
    conf = torch.tensor([[0.5, 0.5, 1.0], [0.5, 0.5, 1.0]])
    assert expected_accepted(drafts, conf, EOS).tolist() == [1.0, 0.75]  # .5 + .25 + .25; nothing after eos


class ScriptedNAR:
    """Fixed proposals (tokens, confidences) per source row."""

    def __init__(self, proposals):
        self.proposals = proposals

    def start(self, net_input, verifier_encoder_out=None):
        return list(range(net_input["src_tokens"].size(0)))

    def select(self, state, rows):
        return [state[i] for i in rows.tolist()]

    def max_positions(self):
        return 77

    def propose_with_confidence(self, state, prefix, k):
        assert len(state) == prefix.size(0)
        tokens = torch.tensor([self.proposals[i][0] for i in state])
        return tokens, torch.tensor([self.proposals[i][1] for i in state])


def test_combined_keeps_the_longer_expected_acceptance_per_row():
    ngram = drafter([[4, 5, 6, 7, 2]], order=2)  # drafts 4 5 6 | 5 6 7 with confidence 1
    nar = ScriptedNAR([([10, 11, 12], [0.9, 0.9, 0.9]),  # 2.44 < 3: the n-gram proposal
                       ([13, 14, 15], [0.5, 0.5, 0.5]),  # 0.88 > 0 (the n-gram drafter has no match)
                       ([16, 17, 18], [1.0, 1.0, 1.0])])  # a tie (3 = 3): the NAR proposal
    combined = CombinedDrafter(nar, ngram, EOS)
    assert combined.max_positions() == 77
    state = combined.start({"src_tokens": torch.zeros(3, 4)})
    tokens, conf = combined.propose_with_confidence(state, left_pad([[EOS], [EOS, 40], [EOS, 4]]), 3)
    assert tokens.tolist() == [[4, 5, 6], [13, 14, 15], [16, 17, 18]]
    assert conf.tolist() == [[1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]]
    # rows 2 and 0 are left: the NAR side follows them
    kept = combined.select(state, torch.tensor([2, 0]))
    assert combined.propose(kept, left_pad([[EOS, 4], [EOS, 40]]), 3).tolist() == [[16, 17, 18], [10, 11, 12]]


# ---------------------------------------------------------------- lossless decoding (tiny fixtures)
from test_speculative_lossless import (  # noqa: E402  (helpers only: pytest would collect imported tests)
    assert_same_tokens, decode, generate_cli, greedy, lossless_batches, setup)

from fairseq_specdec.benchmark import cli as benchmark  # noqa: E402
from fairseq_specdec.drafting.ngram_data import NGramDataError  # noqa: E402
from fairseq_specdec.decoding.speculative_generator import SpeculativeGenerator  # noqa: E402


@pytest.fixture(scope="module")
def greedy_run(demo_data, tiny_verifier):
    """The test set in batches of 1 and 16, and fairseq's greedy output for each."""
    cfg, task, models = setup(demo_data, tiny_verifier)
    samples = lossless_batches(task)
    return samples, {bs: greedy(models, task.target_dictionary, s) for bs, s in samples.items()}


@pytest.mark.parametrize("batch_size", [1, 16])
@pytest.mark.parametrize("combined", [False, True], ids=["ngram", "combined"])
def test_task_generator_equals_greedy(request, demo_data, tiny_verifier, greedy_run, combined, batch_size):
    extra = ["--ngram-drafter"]
    if combined:
        extra += ["--drafter-path", str(request.getfixturevalue("tiny_drafter"))]
    cfg, task, models = setup(demo_data, tiny_verifier, extra)
    generator = task.build_generator(models, cfg.generation)
    assert isinstance(generator, SpeculativeGenerator) and generator.beta == 1
    assert isinstance(generator.drafter, CombinedDrafter if combined else NGramDrafter)
    assert task.build_generator(models, cfg.generation).drafter is generator.drafter  # built once per task
    # by default the index holds the task's own train targets (each with its BOS)
    task.load_dataset("train")
    index = task.ngram_index()
    assert index.order == 4 and index.num_tokens == int(task.dataset("train").tgt_sizes.sum()) + 1
    samples, want = greedy_run
    got = decode(generator, models, samples[batch_size])
    assert_same_tokens(got, want[batch_size])
    stats = task.decoding_stats
    assert stats.sentences == len(got) and stats.accepted_drafts > 0
    print(f"{'combined' if combined else 'n-gram'} batch {batch_size}: "
          f"{stats.accepted_drafts / stats.iterations:.3f} accepted drafts per iteration")
    if combined:  # the NAR side's confidences belong to its own proposals
        nar = generator.drafter.nar
        sample = samples[batch_size][0]
        state = nar.start(sample["net_input"])
        prefix = torch.full((sample["id"].numel(), 1), task.target_dictionary.eos())
        tokens, probs = nar.propose_with_confidence(state, prefix, 5)
        assert torch.equal(tokens, nar.propose(state, prefix, 5))
        assert bool(((probs > 0) & (probs <= 1)).all())


def test_bad_ngram_options_are_clear_errors(demo_data, tiny_verifier, tmp_path):
    with pytest.raises(ValueError, match="--ngram-order must be >= 1"):
        setup(demo_data, tiny_verifier, ["--ngram-drafter", "--ngram-order", "0"])
    other = tmp_path / "other"
    other.mkdir()
    (other / "dict.de.txt").write_text("haus 1\n")
    same_dict = tmp_path / "same_dict"
    same_dict.mkdir()
    (same_dict / "dict.de.txt").write_text((demo_data["bin"] / "dict.de.txt").read_text())
    for data, message in ((tmp_path / "nope", "no such directory"), (tmp_path, "no dict.de.txt"),
                          (other, "differs from the decoder's"), (same_dict, "no binarized train.en-de.de")):
        cfg, task, models = setup(demo_data, tiny_verifier, ["--ngram-drafter", "--ngram-data", str(data)])
        with pytest.raises(NGramDataError, match=message):
            task.build_generator(models, cfg.generation)


def test_cli_ngram_drafter_equals_beam1(demo_data, tiny_verifier):
    """fairseq-generate --ngram-drafter, without any drafter checkpoint, prints --beam 1's lines."""
    subset = ["--gen-subset", "valid", "--max-len-b", "60"]
    want, want_pos, _ = generate_cli(demo_data, tiny_verifier, 8, subset)
    assert len(want) > 50  # the valid set's sentences that fit the verifier's positions
    got, got_pos, proc = generate_cli(demo_data, tiny_verifier, 8, [
        *subset, "--task", "specdec_translation", "--ngram-drafter", "--block-size", "5"])
    assert {i: t for i, (_, t) in got.items()} == {i: t for i, (_, t) in want.items()}
    for i in want:
        assert abs(got[i][0] - want[i][0]) <= 2e-4, (i, got[i][0], want[i][0])
    assert f"SpecDec: {len(want)} sentences" in proc.stdout + proc.stderr


def test_benchmark_ngram_mode_needs_no_drafter(demo_data, tiny_verifier, capsys):
    argv = ["--data", str(demo_data["bin"]), "--verifier", str(tiny_verifier), "--modes", "greedy,specdec_ngram",
            "--max-sentences", "16", "--batch-sizes", "1,4", "--repeats", "1", "--warmup", "0",
            "--block-size", "5", "--threads", "1", "--ctranslate2", "off", "--ngram-order", "3"]
    report = benchmark.main(argv)
    rows = [r for r in report["rows"] if r["mode"] == "specdec_ngram"]
    assert [r["batch"] for r in rows] == [1, 4]
    for r in rows:  # adaptive drafting may find drafting does not pay here (timing): >= 1 token per iteration
        assert r["identical_to_greedy"] is True and r["tok_per_iter"] >= 1.0
    assert "| specdec_ngram | 1 |" in capsys.readouterr().out
    with pytest.raises(benchmark.BenchmarkError, match="--drafter is required for the modes specdec_combined"):
        benchmark.main(argv[:5] + ["greedy,specdec_combined"])
    with pytest.raises(benchmark.BenchmarkError, match="--ngram-data .*no such directory"):
        benchmark.main(argv + ["--ngram-data", str(demo_data["root"] / "nope")])
