"""The forced prefix and the n-gram ban (``fairseq_specdec/decoding/output_rules.py``): the
batched functions against plain references on hand-built inputs, ``_constrain`` with both,
and every generator on the scripted bigram verifier (milliseconds) against fairseq's greedy
with the same prefix, and against greedy with a correct n-gram blocker."""
import math
import random

import pytest
import torch
from fairseq.sequence_generator import SequenceGenerator

import fairseq_specdec  # noqa: F401
from fairseq_specdec.benchmark.oracle import OracleDrafter, source_key
from fairseq_specdec.decoding.output_rules import BlockRules, banned_ngram_tokens, forced_tokens
from fairseq_specdec.decoding.speculative_generator import LeanGreedyGenerator, SpeculativeGenerator
from fairseq_specdec.verification.static_rows import GraphOptions

from lossless_drafters import WrongDrafter
from plain_rules import greedy_with_ban, padded, plain_banned, repeated_ngrams
from scripted_models import bigram_verifier, sample, tiny_dictionary

D = tiny_dictionary()
PAD, EOS, UNK = D.pad(), D.eos(), D.unk()
A, B, C, X = D.index("a"), D.index("b"), D.index("c"), D.index("l")


def as_sets(banned: torch.Tensor):
    """Index form (B x n x T, pad = nothing) as a set of tokens per row and position."""
    return [[set(pos) - {PAD} for pos in row] for row in banned.tolist()]


# ---------------------------------------------------------------- n-gram ban, pure

def test_banned_ngrams_hand_built():
    history = padded([[EOS, A, B, C, A], [EOS, A]], PAD)  # left-padded, BOS first
    lengths = torch.tensor([5, 2])
    drafts = torch.tensor([[B, C], [A, A]])
    bigrams = as_sets(banned_ngram_tokens(history, lengths, drafts, 2, PAD))
    # after ...a: (a, b) occurred; after ...a b: (b, c); after ...a b c: (c, a)
    assert bigrams[0] == [{B}, {C}, {A}]
    # the short row: (BOS, a) ends after the BOS, whose context (the BOS) is not "a"; then (a, a)
    assert bigrams[1] == [set(), {A}, {A}]
    trigrams = as_sets(banned_ngram_tokens(history, lengths, drafts, 3, PAD))
    assert trigrams[0] == [set(), {C}, {A}]  # (c, a, ?) never occurred; (a, b, c); (b, c, a)
    assert trigrams[1] == [set(), set(), {A}]  # (BOS, a, a) does not end a context "a a"; (a, a, a) does
    unigrams = as_sets(banned_ngram_tokens(history, lengths, drafts, 1, PAD))
    assert unigrams[0] == [{A, B, C}] * 3 and unigrams[1] == [{A}] * 3  # never the BOS (eos)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_banned_ngrams_equal_the_plain_rule(n):
    """Batched = one row, one position at a time, on random rows over 4 symbols (many repeats)."""
    rng = random.Random(n)
    bans = 0
    for drafted in (0, 1, 4):
        rows = [[EOS] + [rng.choice([A, B, C, X]) for _ in range(rng.randrange(0, 20))] for _ in range(7)]
        drafts = [[rng.choice([A, B, C, X]) for _ in range(drafted)] for _ in rows]
        got = as_sets(banned_ngram_tokens(padded(rows, PAD), torch.tensor([len(r) for r in rows]),
                                          torch.tensor(drafts, dtype=torch.long).view(len(rows), drafted), n, PAD))
        want = [[plain_banned(row + d[:i], n) for i in range(drafted + 1)] for row, d in zip(rows, drafts)]
        assert got == want
        bans += sum(len(pos) for row in want for pos in row)
    assert bans > 0  # the random rows do repeat


# ---------------------------------------------------------------- forced prefix, pure

def test_forced_tokens_follow_fairseq():
    prefix = torch.tensor([[A, B, C], [A, PAD, PAD], [A, EOS, PAD]])
    steps = torch.tensor([[0, 1, 2, 3]] * 3)
    forced = forced_tokens(prefix, steps, PAD, max_len=10)
    assert forced.mask.tolist() == [[True, True, True, False], [True, False, False, False],
                                    [True, True, False, False]]
    assert forced.tokens.tolist() == [[A, B, C, PAD], [A, PAD, PAD, PAD], [A, EOS, PAD, PAD]]
    # a prefix longer than the maximum length is cut there (step max_len is eos)
    assert forced_tokens(prefix, steps, PAD, max_len=2).mask.tolist()[0] == [True, True, False, False]


def test_constrain_forces_bans_and_skips_min_len_inside_the_prefix(chain):
    """Forced positions keep the forced token's own log-prob (after --unkpen), even a banned
    one (the prefix wins); --min-len does not apply at steps below the prefix width, any row."""
    _, model = chain
    generator = LeanGreedyGenerator([model], D, min_len=3, unk_penalty=0.5)
    torch.manual_seed(0)
    lprobs = torch.log_softmax(torch.randn(2, 3, len(D)), -1)  # rows (b, i) predict step i
    original = lprobs.clone()
    steps = torch.arange(3).expand(2, 3)
    forced = forced_tokens(torch.tensor([[UNK, A], [A, PAD]]), steps, PAD, max_len=10)
    banned = torch.full((2, 3, 1), PAD)
    banned[0, 0, 0] = UNK  # a forced token, banned: still forced
    banned[1, 1, 0] = B  # a free position: banned
    generator._constrain(lprobs, steps, 10, False, BlockRules(forced, banned, free_from=2))
    assert lprobs[0, 0, UNK] == original[0, 0, UNK] - 0.5 and lprobs[0, 1, A] == original[0, 1, A]
    assert torch.isinf(lprobs[0, 0]).sum() == len(D) - 1 and torch.isinf(lprobs[1, 0]).sum() == len(D) - 1
    assert lprobs[1, 1, B] == -math.inf and lprobs[1, 1, C] == original[1, 1, C]
    # steps 0 and 1 lie inside the prefix width (2): eos stays allowed there, not at step 2
    assert lprobs[1, 1, EOS] == original[1, 1, EOS] and lprobs[1, 2, EOS] == -math.inf


# ---------------------------------------------------------------- every generator, scripted verifier

@pytest.fixture(scope="module")
def chain():
    """A bigram verifier with a random table: greedy runs into cycles, which the ban breaks."""
    torch.manual_seed(3)
    table = 2.5 * torch.randn(len(D), len(D))
    table[:, EOS] -= 1.0
    table[A, EOS] = 6.0  # a -> eos: a free step after "a" ends the row unless --min-len bans it
    return table, bigram_verifier(table, D)


SOURCES = [[A, B], [C, C, C, A], [B], [C, A]]


def generators(model, known, **kw):
    """Lean greedy and SpecDec with drafters that are always right and always wrong (the
    right one also over static buffers, the --cuda-graphs path run eagerly)."""
    return {"lean": LeanGreedyGenerator([model], D, **kw),
            "right": SpeculativeGenerator([model], D, OracleDrafter(known, PAD, EOS), block_size=3, **kw),
            "wrong": SpeculativeGenerator([model], D, WrongDrafter(known, D), block_size=3, **kw),
            "static": SpeculativeGenerator([model], D, OracleDrafter(known, PAD, EOS), block_size=3,
                                           graphs=GraphOptions(capture=False), **kw)}


def decode(generator, model, sources, **kw):
    with torch.no_grad():
        return [h[0] for h in generator.generate([model], sample(sources, D), **kw)]


def known_outputs(batch, hypos):
    return {source_key(row, PAD): h["tokens"].tolist() for row, h in zip(batch["net_input"]["src_tokens"], hypos)}


def assert_same(got, want):
    for g, w in zip(got, want):
        assert g["tokens"].tolist() == w["tokens"].tolist()
        assert torch.allclose(g["positional_scores"], w["positional_scores"], atol=1e-5)
        assert abs(float(g["score"]) - float(w["score"])) < 1e-5


PREFIXES = {
    "mixed": [[B, C, A, B], [C, EOS, PAD, PAD], [A, PAD, PAD, PAD], [PAD, PAD, PAD, PAD]],  # eos, pads, none
    "long": [[B, C, B, C, B, C, B, C]] * 4,  # longer than max_len_b=5: cut there, then eos
}


@pytest.mark.parametrize("opts", [dict(max_len_b=30), dict(min_len=3, max_len_b=30), dict(max_len_b=5),
                                  dict(unk_penalty=2.0, min_len=2, max_len_b=30)])
@pytest.mark.parametrize("which", sorted(PREFIXES))
def test_prefix_equals_fairseq_greedy(chain, opts, which):
    _, model = chain
    prefix = torch.tensor(PREFIXES[which])
    want = decode(SequenceGenerator([model], D, beam_size=1, **opts), model, SOURCES, prefix_tokens=prefix)
    for row, h in zip(PREFIXES[which], want):  # the prefix was forced, up to its eos or the length limit
        forced = [t for t in row if t != PAD][: len(h["tokens"]) - 1]
        assert h["tokens"].tolist()[: len(forced)] == forced
    known = known_outputs(sample(SOURCES, D), want)
    built = generators(model, known, **opts)
    for name, generator in built.items():
        assert_same(decode(generator, model, SOURCES, prefix_tokens=prefix), want)
    # the forced tokens stand in for the wrong drafter's drafts at forced steps: accepted there
    assert built["wrong"].stats.accepted_drafts > 0
    if opts.get("min_len") == 3 and which == "mixed":  # row 2: "a" then the free step 1 < 4 takes eos
        assert want[2]["tokens"].tolist() == [A, EOS]


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("batch", ["one", "all"])
def test_no_repeat_ngram_equals_greedy_with_a_correct_blocker(chain, n, batch):
    _, model = chain
    sources = SOURCES[:1] if batch == "one" else SOURCES
    reference = greedy_with_ban([model], D, n, max_len_b=30)
    want = decode(reference, model, sources)
    assert reference.repeat_ngram_blocker.changed > 0  # the ban changed greedy's choices
    plain = decode(SequenceGenerator([model], D, beam_size=1, max_len_b=30), model, sources)
    stock = SequenceGenerator([model], D, beam_size=1, max_len_b=30, no_repeat_ngram_size=n)
    if n == 2 and not stock.repeat_ngram_blocker.use_extension:
        # why the reference is not fairseq's own option: its Python blocker bans nothing
        assert [h["tokens"].tolist() for h in decode(stock, model, sources)] == [h["tokens"].tolist() for h in plain]
    assert sum(repeated_ngrams(h["tokens"].tolist(), n) for h in plain) > 0
    assert all(repeated_ngrams(h["tokens"].tolist()[:-1], n) == 0 for h in want)
    known = known_outputs(sample(sources, D), want)
    for name, generator in generators(model, known, max_len_b=30, no_repeat_ngram_size=n).items():
        assert generator.ngram_size == n
        assert_same(decode(generator, model, sources), want)


def test_prefix_wins_over_the_ngram_ban(chain):
    """A forced prefix that repeats a bigram is kept; the ban applies at the free steps (the
    reference: fairseq's greedy one sentence at a time, its blocker idle at forced steps)."""
    _, model = chain
    rows = [[B, C, B, C], [C, A, PAD, PAD], [B, C, B, C], [PAD, PAD, PAD, PAD]]
    want = []
    for source, row in zip(SOURCES, rows):
        reference = greedy_with_ban([model], D, 2, forced={s for s, t in enumerate(row) if t != PAD}, max_len_b=20)
        want += decode(reference, model, [source], prefix_tokens=torch.tensor([row]))
    assert want[0]["tokens"].tolist()[:4] == [B, C, B, C]
    known = known_outputs(sample(SOURCES, D), want)
    for generator in generators(model, known, no_repeat_ngram_size=2, max_len_b=20).values():
        assert_same(decode(generator, model, SOURCES, prefix_tokens=torch.tensor(rows)), want)
