"""--sampling with a drafter: speculative sampling is exact in distribution.

(a) the rule on hand-built distributions; (b) ``sampling_distribution`` against fairseq's
``search.Sampling.step``; (c) whole outputs of a scripted bigram verifier (short enough to
write the exact distribution down) from fairseq's sampling, lean greedy sampling and SpecDec
sampling, against the exact one; (d) seeds, and the options through the task.

The bounds, each failing with probability below DELTA = 1e-6:
- a frequency f of n i.i.d. draws of an event of probability p: Hoeffding gives
  P(|f - p| >= t) <= 2 exp(-2 n t^2); over m events at once (union bound)
  |f - p| < sqrt(ln(2m / DELTA) / (2n)).
- the total variation between the empirical distribution of N draws and the exact p:
  E[TV] = 1/2 sum_i E|f_i - p_i| <= 1/2 sum_i sqrt(p_i / N) (<= 1/2 sqrt(m / N) over a
  support of m, by Cauchy-Schwarz); one draw changes TV by at most 1/N, so McDiarmid gives
  P(TV >= E[TV] + t) <= exp(-2 N t^2): TV < 1/2 sum_i sqrt(p_i / N) + sqrt(ln(1 / DELTA) / (2N)),
  a bound that halves from N to 4N draws.
"""
import math
from collections import Counter
from unittest import mock

import pytest
import torch
from fairseq.search import Sampling
from fairseq.sequence_generator import SequenceGenerator

import fairseq_specdec  # noqa: F401
from fairseq_specdec.benchmark.oracle import OracleDrafter, source_key
from fairseq_specdec.decoding.speculative_generator import LeanGreedyGenerator, SpeculativeGenerator
from fairseq_specdec.verification.speculative_sampling import (
    SamplingRule, inverse_cdf, sample_block, sampling_candidates, sampling_distribution)
from fairseq_specdec.decoding.stats import DecodingStats

from conftest import USER_DIR
from lossless_drafters import WrongDrafter
from scripted_models import FixedDrafter, bigram_verifier, sample, table_from, tiny_dictionary
from test_errors import cli, first_batch, setup_generation

DELTA = 1e-6
D = tiny_dictionary()
EOS, PAD, A, B, C, X = D.eos(), D.pad(), D.index("a"), D.index("b"), D.index("c"), D.index("l")


def hoeffding(n: int, events: int) -> float:
    return math.sqrt(math.log(2 * events / DELTA) / (2 * n))


# ---------------------------------------------------------------- (a) the rule

def test_accepts_with_the_drafts_probability_and_samples_the_residual():
    """20k trials of a 1-draft block: acceptance ~ p(x), the token after a rejection ~ p
    without x renormalized, the bonus token after an acceptance ~ the next position's p."""
    trials, gen = 20_000, torch.Generator().manual_seed(0)
    p = torch.tensor([0.1, 0.4, 0.2, 0.3, 0.0])
    bonus = torch.tensor([0.5, 0.0, 0.25, 0.0, 0.25])
    probs = torch.stack([p, bonus]).expand(trials, 2, 5)
    verdict = sample_block(probs, torch.full((trials, 1), 1), torch.rand(trials, 2, generator=gen))
    accepted = verdict.num_accepted.eq(1)
    n_acc, n_rej = int(accepted.sum()), int((~accepted).sum())
    residual = p.clone()
    residual[1] = 0
    residual /= residual.sum()
    events = 1 + 2 * 5
    assert abs(n_acc / trials - 0.4) < hoeffding(trials, events)
    for tokens, want, n in ((verdict.next_token[~accepted], residual, n_rej),
                            (verdict.next_token[accepted], bonus, n_acc)):
        freq = torch.bincount(tokens, minlength=5).float() / n
        assert (freq - want).abs().max() < hoeffding(n, events), (freq, want)
    after_rejection = set(verdict.next_token[~accepted].tolist())
    bonus_tokens = set(verdict.next_token[accepted].tolist())
    assert after_rejection == {0, 2, 3} and bonus_tokens == {0, 2, 4}  # never x after a rejection, never p = 0


def test_several_drafts_are_accepted_with_the_product_of_their_probabilities():
    trials, gen = 20_000, torch.Generator().manual_seed(1)
    probs = torch.tensor([[0.7, 0.3, 0.0], [0.2, 0.6, 0.2], [0.0, 0.0, 1.0]]).expand(trials, 3, 3)
    verdict = sample_block(probs, torch.tensor([[0, 1]]).expand(trials, 2), torch.rand(trials, 3, generator=gen))
    freq = torch.bincount(verdict.num_accepted, minlength=3).float() / trials
    want = torch.tensor([0.3, 0.7 * 0.4, 0.7 * 0.6])
    assert (freq - want).abs().max() < hoeffding(trials, 3), freq


def test_certain_and_impossible_drafts_and_batched_equals_one_by_one():
    one_hot = torch.eye(4)
    probs = torch.stack([one_hot[[1, 2, 3]], one_hot[[1, 0, 3]], one_hot[[0, 2, 3]]])  # B=3 x 3 x 4
    drafts = torch.tensor([[1, 2], [1, 2], [1, 2]])
    uniforms = torch.tensor([[0.0, 0.5, 0.999999], [0.3, 0.3, 0.3], [0.9, 0.1, 0.2]])
    verdict = sample_block(probs, drafts, uniforms)
    assert verdict.num_accepted.tolist() == [2, 1, 0]  # all, some, none accepted
    assert verdict.next_token.tolist() == [3, 0, 0]
    for row in range(3):
        alone = sample_block(probs[row:row + 1], drafts[row:row + 1], uniforms[row:row + 1])
        assert alone.num_accepted.item() == verdict.num_accepted[row] and alone.next_token == verdict.next_token[row]


def test_inverse_cdf_never_picks_a_token_without_mass():
    probs = torch.tensor([[[0.0, 0.5, 0.0, 0.5, 0.0]]])
    picks = [int(inverse_cdf(probs, torch.tensor([[u]]))) for u in (0.0, 0.4999, 0.5, 1 - 2 ** -24)]
    assert picks == [1, 1, 3, 3]


# ---------------------------------------------------------------- (b) fairseq's truncation

def fairseq_sampling(lprobs, topk, topp):
    """The distribution ``Sampling.step`` draws from (B x V), and the score it reports per
    token: torch.multinomial is replaced first by a recorder of its input, then by a
    picker of each candidate in turn (which tells the candidate's token)."""
    search, bsz, vocab = Sampling(D, topk, topp), lprobs.size(0), lprobs.size(1)
    seen = {}

    def record(probs, num, replacement=False):
        seen["probs"] = probs.clone()
        return torch.zeros(probs.size(0), num, dtype=torch.long)

    with mock.patch.object(torch, "multinomial", record):
        search.step(0, lprobs.clone().unsqueeze(1), None)
    dist, scores = torch.zeros(bsz, vocab), torch.full((bsz, vocab), math.nan)
    for j in range(seen["probs"].size(1)):
        with mock.patch.object(torch, "multinomial", lambda probs, num, replacement=False: torch.full(
                (probs.size(0), num), j, dtype=torch.long)):
            score, token, _ = search.step(0, lprobs.clone().unsqueeze(1), None)
        rows, token = torch.arange(bsz), token[:, 0]
        dist[rows, token] += seen["probs"][:, j]
        scores[rows, token] = torch.where(seen["probs"][:, j] > 0, score[:, 0], scores[rows, token])
    return dist / dist.sum(-1, keepdim=True), scores


@pytest.mark.parametrize("topk, topp", [(-1, -1.0), (1, -1.0), (3, -1.0), (16, -1.0), (-1, 0.1), (-1, 0.5),
                                        (-1, 0.75), (-1, 0.9), (-1, 1.0), (3, 0.5)])
def test_sampling_distribution_is_fairseqs(topk, topp):
    torch.manual_seed(0)
    lprobs = torch.log_softmax(torch.randn(6, 16) * 2, -1)
    lprobs[:, PAD] = -math.inf
    lprobs[0] = torch.tensor([0.5, 0.25, 0.125, 0.125] + [0.0] * 12).log()  # a set reaching p = 0.75 exactly
    want, scores = fairseq_sampling(lprobs, topk, topp)
    got = sampling_distribution(lprobs.unsqueeze(1), topk, topp).squeeze(1)
    assert torch.allclose(got, want, atol=1e-6), (got, want)
    kept = want > 0  # the score fairseq reports is the token's log-prob before the truncation
    assert torch.allclose(scores[kept], lprobs[kept], atol=1e-6)
    if topp == 0.75:
        assert kept[0].nonzero().flatten().tolist() == [0, 1]  # reaching p stops the set: no third token


# ---------------------------------------------------------------- (c) whole outputs

TABLE = table_from({EOS: {A: 2.0, B: 1.5, C: 1.0}, A: {B: 2.0, A: 1.0, EOS: 1.5}, B: {C: 1.0, EOS: 1.0, A: 0.5},
                    C: {EOS: 2.0, A: 1.0}}, rest=-30.0)
MAX_LEN, MIN_LEN = 3, 1  # outputs of at most 3 tokens and eos, never eos first
RULES = [(SamplingRule(), 0.8), (SamplingRule(topk=2), 1.0), (SamplingRule(topp=0.7), 1.3)]
SEARCH = dict(max_len_a=0, max_len_b=MAX_LEN, min_len=MIN_LEN)


def exact_distribution(rule: SamplingRule, temperature: float):
    """Every output's probability (float64), from the table and the rules written out here."""
    def step_probs(prev, step):
        p = torch.softmax(TABLE[prev].double() / temperature, -1)
        p[PAD] = 0
        if step < MIN_LEN:
            p[EOS] = 0
        if step >= MAX_LEN:
            p = torch.zeros_like(p).index_fill_(0, torch.tensor([EOS]), 1.0)
        order = p.argsort(descending=True)
        if rule.topp > 0:
            before = p[order].cumsum(0) - p[order]
            p[order[before >= rule.topp]] = 0
        elif rule.topk > 0:
            p[order[rule.topk:]] = 0
        return p / p.sum()

    out, todo = {}, [((), 1.0)]
    while todo:
        prefix, mass = todo.pop()
        for token, q in enumerate(step_probs(prefix[-1] if prefix else EOS, len(prefix)).tolist()):
            if mass * q > 1e-12:
                (out.__setitem__(prefix + (token,), mass * q) if token == EOS
                 else todo.append((prefix + (token,), mass * q)))
    assert sum(out.values()) > 1 - 1e-9
    return out


def tv_and_bound(outputs, exact):
    n, counts = len(outputs), Counter(outputs)
    tv = 0.5 * sum(abs(counts.get(s, 0) / n - exact.get(s, 0.0)) for s in set(counts) | set(exact))
    return tv, 0.5 * sum(math.sqrt(p / n) for p in exact.values()) + math.sqrt(math.log(1 / DELTA) / (2 * n))


def decode(generator, model, sources, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        return [h[0] for h in generator.generate([model], sample(sources, D))]


@pytest.fixture(scope="module")
def model():
    return bigram_verifier(TABLE, D)


def generators(model, rule, temperature):
    opts = dict(SEARCH, temperature=temperature, sampling=rule)
    return {
        "fairseq": SequenceGenerator([model], D, beam_size=1, search_strategy=Sampling(D, rule.topk, rule.topp),
                                     **SEARCH, temperature=temperature),
        "lean": LeanGreedyGenerator([model], D, **opts),
        "specdec, a likely script": SpeculativeGenerator([model], D, FixedDrafter([A, B, C, EOS], X, PAD), 3, **opts),
        "specdec, never right": SpeculativeGenerator([model], D, FixedDrafter([X], X, PAD), 2, **opts),
    }


def adaptive(model, rule, temperature):
    return SpeculativeGenerator([model], D, FixedDrafter([A, B, EOS], X, PAD), 3, adaptive=True, sampling=rule,
                                temperature=temperature, **SEARCH)


@pytest.mark.parametrize("rule, temperature", RULES)
def test_outputs_converge_to_the_exact_distribution(model, rule, temperature):
    """N = 4000 and 4N = 16000 outputs (the first N rows of one batch of 4N: rows are
    independent draws) of each generator, within the TV bound at both sizes. Each
    generator draws with its own seed (with one seed SpecDec's outputs would be lean
    greedy's, test_a_seed_gives_the_same_outputs_whatever_drafts), so each is checked on its own."""
    exact, n = exact_distribution(rule, temperature), 4000
    fairseq_scores = {}  # an output's positional scores, as fairseq's sampling reports them
    for seed, (name, generator) in enumerate(generators(model, rule, temperature).items()):
        hypos = decode(generator, model, [[A]] * (4 * n), seed=11 + seed)
        outputs = [tuple(h["tokens"].tolist()) for h in hypos]
        for size in (n, 4 * n):
            tv, bound = tv_and_bound(outputs[:size], exact)
            assert tv < bound, f"{name}: TV {tv:.4f} >= {bound:.4f} with {size} outputs"
        for out, h in zip(outputs[:1000], hypos):
            want = fairseq_scores.setdefault(out, h["positional_scores"])
            assert torch.allclose(h["positional_scores"], want, atol=1e-5), (name, out)


# ---------------------------------------------------------------- (d) seeds

SOURCES = [[A], [B], [C], [A, A], [A, B], [B, C], [C, A], [A, B, C], [B, B], [C, C, C], [D.index("d")], [B, A]]


@pytest.mark.parametrize("rule, temperature", RULES)
def test_a_seed_gives_the_same_outputs_whatever_drafts(model, rule, temperature):
    """The outputs are a function of the uniforms the seed draws: lean greedy's, and
    SpecDec's with any drafter, always right and always wrong included, are the same."""
    opts = dict(SEARCH, temperature=temperature, sampling=rule)
    lean = LeanGreedyGenerator([model], D, **opts)
    want = decode(lean, model, SOURCES, seed=3)
    assert [h["tokens"].tolist() for h in want] == [h["tokens"].tolist() for h in decode(lean, model, SOURCES, 3)]
    others = [decode(lean, model, SOURCES, seed) for seed in (4, 5)]
    assert any([h["tokens"].tolist() for h in o] != [h["tokens"].tolist() for h in want] for o in others)
    known = {source_key(row, PAD): h["tokens"].tolist() for row, h in zip(sample(SOURCES, D)["net_input"]["src_tokens"],
                                                                          want)}
    right, wrong = DecodingStats(), DecodingStats()
    specs = [SpeculativeGenerator([model], D, OracleDrafter(known, PAD, EOS), 5, stats=right, **opts),
             SpeculativeGenerator([model], D, WrongDrafter(known, D), 5, stats=wrong, **opts),
             *list(generators(model, rule, temperature).values())[2:], adaptive(model, rule, temperature)]
    for generator in specs:
        for g, w in zip(decode(generator, model, SOURCES, seed=3), want):
            assert g["tokens"].tolist() == w["tokens"].tolist()
            assert torch.allclose(g["positional_scores"], w["positional_scores"], atol=1e-5)
    assert right.iterations == len(SOURCES)  # every draft accepted: one iteration per sentence
    assert wrong.accepted_drafts == 0 and wrong.committed_tokens == wrong.iterations


# ---------------------------------------------------------------- (d) through the task and the CLI

def task_generator(demo_data, verifier, extra):
    cfg, task, models, saved_cfg = setup_generation(demo_data, verifier, extra)
    return task.build_generator(models, cfg.generation), models, first_batch(task, saved_cfg, batch_size=6)


def test_sampling_with_a_drafter_through_the_task(demo_data, tiny_verifier, chain_drafter):
    """The chain drafter and --sampling: a seed gives the same sample, lean greedy's with the
    same seed; another seed another sample."""
    rule = ["--sampling", "--sampling-topp", "0.9", "--temperature", "0.9"]
    spec, models, batch = task_generator(demo_data, tiny_verifier, ["--drafter-path", str(chain_drafter), *rule])
    lean, _, _ = task_generator(demo_data, tiny_verifier, ["--lean-greedy", *rule])
    assert isinstance(spec, SpeculativeGenerator) and spec.sampling == SamplingRule(topp=0.9)

    def tokens(generator, seed):
        torch.manual_seed(seed)
        with torch.no_grad():
            return [h[0]["tokens"].tolist() for h in generator.generate(models, batch)]

    first = tokens(spec, 1)
    assert tokens(spec, 1) == first == tokens(lean, 1)
    assert tokens(spec, 2) != first


def test_sampling_refusals(demo_data, tiny_verifier, chain_drafter, untrained_drafter):
    drafter = ["--drafter-path", str(chain_drafter)]
    with pytest.raises(ValueError, match="--beta 2 --tau 1.0: relaxed acceptance is a greedy rule"):
        task_generator(demo_data, tiny_verifier, [*drafter, "--sampling", "--beta", "2"])
    with pytest.raises(ValueError, match="--beam 5 --sampling: fairseq would draw 5 samples per sentence"):
        task_generator(demo_data, tiny_verifier, [*drafter, "--sampling", "--beam", "5"])
    with pytest.raises(ValueError, match="--sampling-topk 3 requires --sampling"):
        task_generator(demo_data, tiny_verifier, [*drafter, "--sampling-topk", "3"])
    with pytest.raises(ValueError, match="--sampling is not supported with drafter-only decoding"):
        task_generator(demo_data, untrained_drafter, ["--sampling"])


def test_fairseq_generate_samples_with_a_drafter_and_a_seed(demo_data, tiny_verifier, chain_drafter):
    """fairseq-generate seeds torch's RNG with --seed: two runs print the same samples."""
    cmd = ["fairseq-generate", demo_data["bin"], "--user-dir", USER_DIR, "--task", "specdec_translation",
           "--path", tiny_verifier, "--drafter-path", chain_drafter, "--beam", "1", "--sampling",
           "--sampling-topk", "10", "--seed", "5", "--max-sentences", "16", "--gen-subset", "valid"]
    runs = [cli(cmd) for _ in range(2)]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr[-3000:]
    hypotheses = [sorted(line for line in proc.stdout.splitlines() if line.startswith("H-")) for proc in runs]
    sources = [line for line in runs[0].stdout.splitlines() if line.startswith("S-")]
    assert len(hypotheses[0]) == len(sources) > 50 and hypotheses[0] == hypotheses[1]


@pytest.mark.parametrize("topk", [1, 3, 7])
def test_topk_candidates_pick_the_vocabulary_wide_sample(topk):
    """Top-k alone samples over the k kept tokens (``sampling_candidates``): the same
    token as the inverse CDF over the whole truncated distribution for random uniforms (away
    from the float rounding at a CDF boundary), drafts and banned (-inf) tokens included; with
    top-p, or k >= V, the whole vocabulary."""
    torch.manual_seed(topk)
    lprobs = torch.randn(6, 4, 20).mul(2).log_softmax(-1)
    lprobs[0, :, :18] = -math.inf  # fewer finite tokens than k in some rows
    lprobs[1, 1, 5] = -math.inf
    drafts = lprobs[:, :3].argmax(-1)
    drafts[2] = torch.tensor([0, 1, 2])  # drafts outside the top k too
    rule = SamplingRule(topk=topk)
    probs, ids = sampling_candidates(lprobs, rule)
    assert probs.shape == (6, 4, topk) and bool((ids[..., 1:] > ids[..., :-1]).all())
    assert sampling_candidates(lprobs, SamplingRule(topk=topk, topp=0.5))[1] is None
    assert sampling_candidates(lprobs, SamplingRule(topk=20))[1] is None
    for _ in range(200):
        uniforms = torch.rand(6, 4)
        wide = sample_block(sampling_distribution(lprobs, topk), drafts, uniforms)
        narrow = sample_block(probs, drafts, uniforms, ids)
        assert torch.equal(wide.num_accepted, narrow.num_accepted)
        assert torch.equal(wide.next_token, narrow.next_token)
