"""Adaptive drafting (``drafting.policy``): the two decisions on hand-built costs and
confidences, the calibration counts, the packing of blocks a drafter observes late, and
the whole loop: lossless on the scripted verifier and with the trained chain drafter."""
from types import SimpleNamespace

import pytest
import torch

import fairseq_specdec  # noqa: F401
from fairseq_specdec.drafting.policy import (
    BINS, FIRST_DRAFTS, FIRST_PROBE, PRIOR_WEIGHT, REFRESH, Calibration, Costs, DraftPolicy, Line, bucket,
    worth_another_step, worth_drafting)
from fairseq_specdec.decoding.speculative_generator import ChainStop, SpeculativeGenerator, Unobserved
from fairseq_specdec.decoding.stats import DecodingStats

from scripted_models import FixedDrafter, bigram_verifier, sample, table_from, tiny_dictionary


# ---------------------------------------------------------------- pure decisions

def test_buckets_are_the_powers_of_two_above():
    assert [bucket(b) for b in (1, 2, 3, 4, 5, 8, 9, 32, 33)] == [1, 2, 4, 4, 8, 8, 16, 32, 64]


def measured(greedy, base, step, **kw) -> Costs:
    """Costs whose drafting iterations took exactly base + step * j (j = 1 and 5 measured)."""
    line = Line()
    for drafts in (1, 5):
        line.add(drafts, base + step * drafts)
    return Costs(greedy=greedy, drafting=line, **kw)


def test_the_drafting_line_is_fitted_and_without_spread_split_over_the_drafts():
    assert measured(0.010, 0.012, 0.002).drafting.fit(0.010) == pytest.approx((0.012, 0.002))
    flat = Line()
    for _ in range(3):
        flat.add(4, 0.020)  # always 4 drafts: the slope is not identified
    assert flat.fit(0.010) == pytest.approx((0.020 - 4 * 0.002, 0.002))  # (20 - 10) / (4 + 1) ms a draft
    assert Line().fit(0.010) is None


def test_drafting_is_worth_it_when_its_tokens_per_second_beat_greedy():
    # greedy: 1 token per 10 ms; drafting 3 drafts: 12 + 2 * 3 = 18 ms
    assert worth_drafting(measured(0.010, 0.012, 0.002, drafted_steps=3.0, drafted_tokens=1.9))  # 1.9 / 18 > 1 / 10
    assert not worth_drafting(measured(0.010, 0.012, 0.002, drafted_steps=3.0, drafted_tokens=1.7))


def test_before_anything_is_measured_greedy_comes_first_then_drafting():
    assert not worth_drafting(Costs())
    assert worth_drafting(Costs(greedy=0.01))


def test_one_more_step_pays_when_its_expected_tokens_outgrow_its_cost():
    costs = measured(0.010, 0.012, 0.002)
    # 2 drafts: 16 ms for 2.5 tokens (0.156 per ms); a third: 18 ms
    assert worth_another_step(2.5, 0.40, 2, costs)  # 2.9 / 18 = 0.161
    assert not worth_another_step(2.5, 0.25, 2, costs)  # 2.75 / 18 = 0.153
    # nothing measured: a short chain of FIRST_DRAFTS, whatever the expected gain
    assert worth_another_step(1.0, 0.0, FIRST_DRAFTS - 1, Costs())
    assert not worth_another_step(9.0, 1.0, FIRST_DRAFTS, Costs())


# ---------------------------------------------------------------- calibration

def test_calibration_counts_a_draft_only_when_its_predecessors_were_accepted():
    cal = Calibration.prior(torch.device("cpu"))
    confidence = torch.tensor([[0.95, 0.95, 0.05], [0.95, 0.55, 0.55]])
    cal.record(confidence, torch.tensor([1, 3]))
    prior = torch.full((BINS,), PRIOR_WEIGHT)
    # row 0: 0.95 accepted, 0.95 tried and rejected, 0.05 never looked at; row 1: all three accepted
    assert (cal.trials - prior).tolist() == [0, 0, 0, 0, 0, 2, 0, 0, 0, 3]
    centres = (torch.arange(BINS) + 0.5) / BINS * PRIOR_WEIGHT
    assert (cal.accepted - centres).tolist() == pytest.approx([0, 0, 0, 0, 0, 2, 0, 0, 0, 2])
    assert float(cal.probability(torch.tensor(0.99))) == pytest.approx((0.95 * PRIOR_WEIGHT + 2) / (PRIOR_WEIGHT + 3))


def test_the_prior_trusts_the_confidence():
    cal = Calibration.prior(torch.device("cpu"))
    assert cal.probability(torch.tensor([0.01, 0.51, 0.99])).tolist() == pytest.approx([0.05, 0.55, 0.95])


# ---------------------------------------------------------------- the policy over iterations

def simulate(policy, batch_size, iterations, greedy_s, drafting_s, drafting_tokens):
    """The policy's choices over ``iterations`` iterations whose greedy steps take ``greedy_s``
    and whose drafting iterations take ``drafting_s`` for ``drafting_tokens`` tokens a row."""
    choices = []
    for _ in range(iterations):
        k = policy.block_for(batch_size)
        choices.append(k)
        policy.record(batch_size, k, 1.0 if k == 0 else drafting_tokens, greedy_s if k == 0 else drafting_s)
    return choices


def test_probes_wait_until_the_drafter_is_in_step():
    policy = DraftPolicy(max_drafts=4)
    for k in (0, 0, 4):
        policy.record(1, k, 1.0 if k == 0 else 1.05, 0.010 if k == 0 else 0.011)  # drafting loses, cheaply
    choices = [policy.block_for(1, in_step=False) for _ in range(3 * FIRST_PROBE)]
    assert set(choices) == {0}  # a probe would first have to catch the drafter up
    assert policy.block_for(1, in_step=True) == 4


def test_greedy_when_drafting_loses_with_probes_at_doubling_intervals():
    # greedy: 10 ms a token; drafting: 11 ms for 1.05 tokens (a cheap drafter that is rarely right)
    choices = simulate(DraftPolicy(max_drafts=4), 1, 80, 0.010, 0.011, 1.05)
    assert choices[:3] == [0, 0, 4]  # measure greedy (the very first iteration is not counted), then drafting
    probes = [i for i, k in enumerate(choices) if k > 0][1:]
    gaps = [b - a for a, b in zip(probes, probes[1:])]
    assert len(gaps) >= 2 and gaps[0] > FIRST_PROBE
    assert all(later == 2 * earlier - 1 for earlier, later in zip(gaps, gaps[1:]))  # the interval doubles
    assert sum(k == 0 for k in choices) > 70


def test_costly_probes_wait_until_they_are_a_small_share_of_the_time():
    # a batch of 32 rows: greedy 10 ms, a drafting iteration 50 ms for 2 tokens a row
    choices = simulate(DraftPolicy(max_drafts=4), 32, 200, 0.010, 0.050, 2.0)
    probes = [i for i, k in enumerate(choices) if k > 0]
    gaps = [b - a for a, b in zip(probes, probes[1:])]
    assert gaps and min(gaps) > (0.050 - 0.010) / (0.05 * 0.010)  # 80 greedy steps pay for one probe
    assert len(probes) * 0.040 <= 0.06 * (len(choices) - len(probes)) * 0.010 + 0.040  # probes: ~5% of the time


def test_drafting_continues_while_it_wins():
    choices = simulate(DraftPolicy(max_drafts=4), 8, 2 * REFRESH + 4, 0.010, 0.020, 3.5)
    assert choices[:3] == [0, 0, 4]
    # a greedy step after every REFRESH drafting iterations keeps the greedy cost measured
    assert [i for i, k in enumerate(choices) if k == 0] == [0, 1, 2 + REFRESH, 3 + 2 * REFRESH]


def test_each_batch_size_bucket_has_its_own_costs():
    policy = DraftPolicy(max_drafts=4)
    for _ in range(10):  # batch 1: drafting wins; batch 32: it loses
        policy.record(1, 0, 1.0, 0.010)
        policy.record(1, 4, 3.0, 0.015)
        policy.record(32, 0, 1.0, 0.010)
        policy.record(32, 4, 1.5, 0.040)
    assert policy.block_for(1) == 4 and policy.block_for(32) == 0


def test_the_chain_stops_where_the_calibrated_reach_is_too_small():
    policy = DraftPolicy(max_drafts=6)
    policy.record(1, 0, 1.0, 0.010)  # the very first iteration: not counted
    policy.record(1, 0, 1.0, 0.010)
    policy.record(1, 6, 4.0, 0.024)  # one step = (24 - 10) / 7 = 2 ms, greedy 10 ms
    sure, unsure = torch.tensor([0.97]), torch.tensor([0.15])
    stop = ChainStop(policy, 1, eos=2)
    assert [stop(torch.tensor([5]), sure) for _ in range(3)] == [True, True, True]
    stop = ChainStop(policy, 1, eos=2)
    assert stop(torch.tensor([5]), sure) and not stop(torch.tensor([5]), unsure)
    stop = ChainStop(policy, 1, eos=2)
    assert not stop(torch.tensor([2]), sure)  # nothing after a drafted eos is ever committed
    stop = ChainStop(policy, 1, eos=2)
    assert [stop(torch.tensor([5]), sure) for _ in range(6)][-1] is False  # at most k


# ---------------------------------------------------------------- late observation

def test_greedy_blocks_wait_side_by_side_and_leave_with_their_rows():
    pending = Unobserved()
    assert pending.empty
    for step in range(3):  # two rows, one state (C = 2) and one token per greedy step
        pending.add(torch.full((2, 1, 2), float(step)), torch.tensor([[10 + step], [20 + step]]), torch.ones(2))
    pending.select(torch.tensor([1]))
    assert pending.tokens.tolist() == [[20, 21, 22]] and pending.states[0, :, 0].tolist() == [0.0, 1.0, 2.0]
    seen = []
    pending.flush(SimpleNamespace(observe=lambda state, *block: seen.append(block) or "observed"), None)
    (states, tokens, counts), = seen
    assert counts.tolist() == [3] and tokens.tolist() == [[20, 21, 22]] and pending.empty


def test_a_chain_drafter_observing_late_drafts_as_one_that_observed_each_block(demo_data, tiny_verifier,
                                                                               chain_drafter):
    from fairseq import checkpoint_utils

    from fairseq_specdec.drafting.chain import ChainDrafter

    verifier = checkpoint_utils.load_model_ensemble([str(tiny_verifier)])[0][0].eval()
    drafter_model = checkpoint_utils.load_model_ensemble([str(chain_drafter)])[0][0].eval()
    dictionary = drafter_model.decoder.dictionary
    eager, late = (ChainDrafter(drafter_model, dictionary, verifier) for _ in range(2))
    torch.manual_seed(0)
    src = torch.randint(dictionary.nspecial, len(dictionary), (3, 7))
    src[:, -1] = dictionary.eos()
    net_input = {"src_tokens": src, "src_lengths": torch.full((3,), 7)}
    dim = drafter_model.decoder.embed_tokens.embedding_dim
    blocks = [(torch.randn(3, 1, dim), torch.randint(dictionary.nspecial, len(dictionary), (3, 1)),
               torch.ones(3, dtype=torch.long)) for _ in range(4)]  # four greedy steps
    pending = Unobserved()
    with torch.no_grad():
        a, b = eager.start(net_input), late.start(net_input)
        for block in blocks:
            a = eager.observe(a, *block)
            pending.add(*block)
        b = pending.flush(late, b)
        assert torch.equal(a.cache.length, b.cache.length)
        assert torch.allclose(a.predicted, b.predicted, atol=1e-5)
        for (ka, va), (kb, vb) in zip(a.cache.target, b.cache.target):
            for row, n in enumerate(a.cache.length.tolist()):
                assert torch.allclose(ka[row, :, :n], kb[row, :, :n], atol=1e-5)
                assert torch.allclose(va[row, :, :n], vb[row, :, :n], atol=1e-5)
        assert torch.equal(eager.propose(a, None, 4), late.propose(b, None, 4))


# ---------------------------------------------------------------- the loop, lossless

D = tiny_dictionary()
EOS, A, B, C, X = D.eos(), D.index("a"), D.index("b"), D.index("c"), D.index("l")
CHAIN = {EOS: {A: 3.0, B: 2.0}, A: {B: 3.0, C: 2.5}, B: {C: 3.0, D.index("d"): 2.0}, C: {EOS: 3.0, A: 1.0}}


@pytest.mark.parametrize("script", [[A, B, C, EOS], [X]])
def test_adaptive_drafting_on_the_scripted_verifier_is_greedy(script):
    from fairseq.sequence_generator import SequenceGenerator

    model = bigram_verifier(table_from(CHAIN), D)
    sources = [[A, B], [C, C, C, A], [B]] * 6
    with torch.no_grad():
        want = [h[0] for h in SequenceGenerator([model], D, beam_size=1).generate([model], sample(sources, D))]
        stats = DecodingStats()
        gen = SpeculativeGenerator([model], D, FixedDrafter(script, X, D.pad()), block_size=3, stats=stats,
                                   adaptive=True)
        for _ in range(3):  # the policy learns across batches
            got = [h[0] for h in gen.generate([model], sample(sources, D))]
            for g, w in zip(got, want):
                assert g["tokens"].tolist() == w["tokens"].tolist()
                assert torch.allclose(g["positional_scores"], w["positional_scores"], atol=1e-5)
    assert stats.greedy_iterations > 0  # the first iteration of a batch size measures greedy
    assert stats.drafted_tokens > 0


@pytest.mark.parametrize("drafter_fixture", ["chain_drafter", "feature_drafter", "tiny_drafter"])
def test_adaptive_drafting_with_trained_drafters_is_greedy(demo_data, tiny_verifier, drafter_fixture, request):
    """Through the task (adaptive drafting is its default): every trained drafter kind, at
    batch 1 (a third of the test set) and 16 (all of it), returns greedy's tokens; the
    chain drafter stops its chain early (fewer drafts than k per iteration) somewhere."""
    from test_speculative_lossless import assert_same_tokens, decode, greedy, lossless_batches, setup

    cfg, task, models = setup(demo_data, tiny_verifier, ["--drafter-path", str(request.getfixturevalue(drafter_fixture))])
    generator = task.build_generator(models, cfg.generation)
    assert isinstance(generator, SpeculativeGenerator) and generator.policy is not None
    for samples in lossless_batches(task).values():
        assert_same_tokens(decode(generator, models, samples), greedy(models, task.target_dictionary, samples))
    stats = task.decoding_stats
    assert 0 < stats.greedy_iterations < stats.iterations
    if drafter_fixture == "chain_drafter":
        drafting = stats.iterations - stats.greedy_iterations
        assert stats.drafted_tokens < generator.block_size * drafting


def test_adaptive_drafting_over_static_buffers_is_greedy(demo_data, tiny_verifier, chain_drafter):
    """The --cuda-graphs path run eagerly, adaptive: whole blocks or greedy steps (a recorded
    chain cannot stop midway), every greedy block observed at once; greedy's tokens."""
    from test_feature_drafter import static_chain_generator
    from test_speculative_lossless import assert_same_tokens, decode, greedy, lossless_batches, setup

    cfg, task, models = setup(demo_data, tiny_verifier, ["--drafter-path", str(chain_drafter), "--fixed-block"])
    fixed = task.build_generator(models, cfg.generation)
    static, stats = static_chain_generator(fixed, models, task.target_dictionary, capture=False)
    static.policy = DraftPolicy(static.block_size)
    assert not static.observe_later
    samples = lossless_batches(task)[16]
    assert_same_tokens(decode(static, models, samples), greedy(models, task.target_dictionary, samples))
    assert stats.greedy_iterations > 0


def test_a_new_bucket_starts_from_its_nearest_neighbour_and_learns_its_own():
    policy = DraftPolicy(max_drafts=4)
    for _ in range(10):  # batch 32: drafting loses
        policy.record(32, 0, 1.0, 0.010)
        policy.record(32, 4, 1.5, 0.040)
    assert policy.block_for(20) == 0 and policy.block_for(12) == 0  # bucket 16 inherits the verdict
    costs = policy.bucket_costs(12)
    assert costs.greedy == pytest.approx(policy.bucket_costs(32).greedy)
    policy.record(12, 0, 1.0, 0.004)  # its own first measurement weighs as much as the inherited one
    assert costs.greedy == pytest.approx((policy.bucket_costs(32).greedy + 0.004) / 2)
