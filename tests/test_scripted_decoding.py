"""Generators on a scripted bigram verifier (tests/scripted_models.py): exact tokens,
scores and acceptance counts written down by hand, no training, milliseconds per test.
fairseq's own greedy ``SequenceGenerator`` runs the same model as the reference."""
import pytest
import torch
from fairseq.sequence_generator import SequenceGenerator

import fairseq_specdec  # noqa: F401
from fairseq_specdec.decoding.speculative_generator import LeanGreedyGenerator, SpeculativeGenerator
from fairseq_specdec.verification.static_rows import GraphOptions
from fairseq_specdec.decoding.stats import DecodingStats

from scripted_models import FixedDrafter, bigram_verifier, sample, table_from, tiny_dictionary

D = tiny_dictionary()
EOS, A, B, C, X = D.eos(), D.index("a"), D.index("b"), D.index("c"), D.index("l")
# BOS(eos) -> a -> b -> c -> eos, each with a runner-up
CHAIN = {EOS: {A: 3.0, B: 2.0}, A: {B: 3.0, C: 2.5}, B: {C: 3.0, D.index("d"): 2.0}, C: {EOS: 3.0, A: 1.0}}
SOURCES = [[A, B], [C, C, C, A], [B]]


def lprob(table, prev, nxt):
    return float(torch.log_softmax(table[prev], -1)[nxt])


def run(generator, model, sources=SOURCES):
    with torch.no_grad():
        hypos = generator.generate([model], sample(sources, D))
    return [h[0] for h in hypos]


def speculative(model, script, k, filler=X, **kw):
    stats = DecodingStats()
    drafter = FixedDrafter(script, filler, D.pad())
    return SpeculativeGenerator([model], D, drafter, block_size=k, stats=stats, **kw), stats, drafter


@pytest.fixture(scope="module")
def chain():
    table = table_from(CHAIN)
    return table, bigram_verifier(table, D)


def test_fairseq_greedy_follows_the_table(chain):
    table, model = chain
    want = [A, B, C, EOS]
    scores = [lprob(table, p, n) for p, n in zip([EOS] + want[:-1], want)]
    for hypo in run(SequenceGenerator([model], D, beam_size=1), model):
        assert hypo["tokens"].tolist() == want
        assert hypo["positional_scores"].tolist() == pytest.approx(scores, abs=1e-5)
        assert float(hypo["score"]) == pytest.approx(sum(scores) / len(scores), abs=1e-5)


@pytest.mark.parametrize("script, k, iterations, histogram", [
    ([A, B, C, EOS], 3, 1, [0, 0, 0, 1]),  # all three drafts accepted, the verifier adds eos
    ([A, B, C, EOS], 5, 1, [0, 0, 0, 0, 1]),  # the drafted eos is accepted and ends the sentence
    ([A, B, X], 3, 2, [1, 0, 1]),  # a, b accepted, x rejected (the verifier's c instead); then nothing
    ([X], 2, 4, [4]),  # never right: one verifier token per iteration
    ([EOS], 3, 4, [4]),  # an eos drafted first is rejected like any wrong token
])
@pytest.mark.parametrize("graphs", [None, GraphOptions(capture=False)], ids=["cache", "static"])
def test_specdec_commits_exactly_the_accepted_drafts(chain, script, k, iterations, histogram, graphs):
    table, model = chain
    greedy = run(SequenceGenerator([model], D, beam_size=1), model)
    generator, stats, drafter = speculative(model, script, k, graphs=graphs)
    got = run(generator, model)
    for g, w in zip(got, greedy):
        assert g["tokens"].tolist() == w["tokens"].tolist()
        assert torch.allclose(g["positional_scores"], w["positional_scores"], atol=1e-5)
    assert stats.iterations == iterations * len(SOURCES)
    assert stats.accepted_histogram == [c * len(SOURCES) for c in histogram]
    assert stats.committed_tokens == 4 * len(SOURCES)
    assert len(drafter.proposals) == iterations  # the batch stays together: same path in every row


@pytest.mark.parametrize("graphs", [None, GraphOptions(capture=False)], ids=["cache", "static"])
def test_lean_greedy_equals_fairseq_greedy(chain, graphs):
    _table, model = chain
    want = run(SequenceGenerator([model], D, beam_size=1), model)
    stats = DecodingStats()
    got = run(LeanGreedyGenerator([model], D, stats=stats, graphs=graphs), model)
    for g, w in zip(got, want):
        assert g["tokens"].tolist() == w["tokens"].tolist()
        assert torch.allclose(g["positional_scores"], w["positional_scores"], atol=1e-5)
    assert stats.iterations == 4 * len(SOURCES) and stats.accepted_drafts == 0


@pytest.mark.parametrize("tau, want", [(1.0, [A, C, EOS]), (0.4, [A, B, C, EOS])])
def test_relaxed_acceptance_takes_a_runner_up_within_tau(chain, tau, want):
    """After a, c is the runner-up 0.5 below b: beta=2 accepts it when tau >= 0.5."""
    table, model = chain
    generator, stats, _ = speculative(model, [A, C, EOS], 3, beta=2, tau=tau)
    for hypo in run(generator, model):
        assert hypo["tokens"].tolist() == want
        prev = [EOS] + want[:-1]
        assert hypo["positional_scores"].tolist() == pytest.approx(
            [lprob(table, p, n) for p, n in zip(prev, want)], abs=1e-5)


@pytest.mark.parametrize("max_len_a, max_len_b", [(0, 5), (1, 2)])
def test_a_loop_is_cut_at_the_length_limit(max_len_a, max_len_b):
    """a -> b -> a ... never ends: every generator stops at fairseq's limit, computed from
    the batch's padded source length (eos included), and appends eos."""
    table = table_from({EOS: {A: 3.0}, A: {B: 3.0}, B: {A: 3.0}})
    model = bigram_verifier(table, D)
    limit = int(max_len_a * (max(len(s) for s in SOURCES) + 1) + max_len_b)
    want = ([A, B] * limit)[:limit] + [EOS]
    opts = dict(max_len_a=max_len_a, max_len_b=max_len_b)
    generators = [SequenceGenerator([model], D, beam_size=1, **opts), LeanGreedyGenerator([model], D, **opts),
                  speculative(model, [A, B] * 20, 3, **opts)[0], speculative(model, [X], 3, **opts)[0]]
    for generator in generators:
        assert [h["tokens"].tolist() for h in run(generator, model)] == [want] * len(SOURCES), type(generator)


def test_min_len_suppresses_eos_like_fairseq(chain):
    """With min_len 5 the eos after c (step 3) is forbidden: the chain goes round once more."""
    _table, model = chain
    want = [A, B, C, A, B, C, EOS]
    reference = run(SequenceGenerator([model], D, beam_size=1, min_len=5), model)
    generators = [LeanGreedyGenerator([model], D, min_len=5), speculative(model, want, 4, min_len=5)[0],
                  speculative(model, [A, B, C, EOS], 4, min_len=5)[0]]
    for generator in generators:
        got = run(generator, model)
        for g, w in zip(got, reference):
            assert g["tokens"].tolist() == w["tokens"].tolist() == want
            assert torch.allclose(g["positional_scores"], w["positional_scores"], atol=1e-5)
