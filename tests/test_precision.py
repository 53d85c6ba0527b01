"""Reduced precision: lean greedy and SpecDec against fairseq's greedy in the same precision,
under the rule of ``precision_rule`` (sequences equal, or equal up to a first difference
where the verifier's top two log-probabilities lie within the precision's tolerance).

The rule itself on hand-built inputs; then the trained tiny verifier in bf16 on the CPU, and
in fp16 and bf16 on a GPU (skipped without CUDA), with an always-right drafter (fairseq's
own output), the trained tiny drafter and the always-wrong drafter."""
import math
from argparse import Namespace

import pytest
import torch
from fairseq import checkpoint_utils, tasks

import fairseq_specdec  # noqa: F401
from fairseq_specdec.drafting.loading import load_drafter, place_like
from fairseq_specdec.drafting.kinds import make_proposer
from fairseq_specdec.benchmark.oracle import OracleDrafter, source_key
from fairseq_specdec.decoding.generators import build_generator
from fairseq_specdec.decoding.plan import DecodingPlan
from fairseq_specdec.verification.precision_rule import (TOLERANCE, Divergence, Tally, compare, decode_all, divergence,
                                                     first_difference, top2_gaps)

from lossless_drafters import WrongDrafter

SENTENCES = 64
SEARCH = dict(max_len_a=1.2, max_len_b=10)


# ---------------------------------------------------------------- the rule, by hand

def lprobs_with_gaps(gaps, vocab=6):
    """T x V log-probability rows whose top-1 minus top-2 is ``gaps[t]``."""
    rows = torch.full((len(gaps), vocab), -10.0)
    for t, gap in enumerate(gaps):
        rows[t, 4], rows[t, 5] = -1.0, -1.0 - gap
    return rows


def test_first_difference():
    assert first_difference([5, 6, 2], [5, 6, 2]) is None
    assert first_difference([5, 6, 2], [5, 7, 2]) == 1
    assert first_difference([5, 2], [5, 6, 2]) == 1  # one ends where the other goes on
    assert first_difference([7, 6, 2], [5, 6, 2]) == 0


def test_top2_gaps():
    assert top2_gaps(lprobs_with_gaps([0.0, 0.5, 3.0])).tolist() == pytest.approx([0.0, 0.5, 3.0])
    assert top2_gaps(torch.tensor([[-math.inf, -0.1, -2.4]])).tolist() == pytest.approx([2.3])


@pytest.mark.parametrize("ours, gap, allowed_bf16, allowed_fp32", [
    ([5, 6, 2], 0.0, True, True),  # identical
    ([5, 4, 2], 0.0, True, True),  # an exact tie at the difference
    ([5, 4, 2], 0.2, True, False),  # within bf16's tolerance, not fp32's
    ([5, 4, 2], 0.3, False, False),  # a clear top-1 was missed: a bug in any precision
])
def test_divergence_is_allowed_only_at_a_near_tie(ours, gap, allowed_bf16, allowed_fp32):
    reference = [5, 6, 2]
    d = divergence(reference, ours, lprobs_with_gaps([9.0, gap, 9.0]))
    assert d.position == (None if ours == reference else 1)
    assert d.gap == pytest.approx(0.0 if ours == reference else gap)
    assert d.allowed(TOLERANCE[torch.bfloat16]) == allowed_bf16
    assert d.allowed(TOLERANCE[torch.float32]) == allowed_fp32


def test_tally():
    tally = Tally()
    for d in (Divergence(None, 0.0), Divergence(3, 0.1), Divergence(0, 0.4), Divergence(None, 0.0)):
        tally.add(d, tolerance=0.25)
    assert (tally.sentences, tally.identical, tally.violations) == (4, 2, 1)
    assert tally.largest_gap == pytest.approx(0.4)
    assert "2/4 identical" in tally.summary()


# ---------------------------------------------------------------- the tiny verifier in reduced precision

def load(demo_data, verifier, drafter, dtype, device):
    task = tasks.setup_task(Namespace(
        task="specdec_translation", data=str(demo_data["bin"]), source_lang="en", target_lang="de",
        block_size=None, seed=1, dataset_impl=None, train_subset="train", required_seq_len_multiple=1))
    task.load_dataset("test")
    model = checkpoint_utils.load_model_ensemble([str(verifier)], task=task)[0][0]
    model = model.to(device=device, dtype=dtype).eval()
    return task, model, place_like(load_drafter(str(drafter), task), model)


def batches(task, device, count=SENTENCES, batch_size=16):
    dataset = task.dataset("test")
    ids = sorted(range(count), key=lambda i: dataset.src_sizes[i])
    for start in range(0, count, batch_size):
        sample = dataset.collater([dataset[i] for i in ids[start:start + batch_size]])
        net_input = {k: sample["net_input"][k].to(device) for k in ("src_tokens", "src_lengths")}
        yield {"id": sample["id"], "net_input": net_input}


def check_precision(demo_data, tiny_verifier, tiny_drafter, dtype, device):
    """Every mode obeys the rule against fairseq's greedy in ``dtype``, and most sentences are identical
    (the tiny verifier, 300 updates, has many near-ties: about 2/3 of them in bf16 on the CPU)."""
    task, model, drafter = load(demo_data, tiny_verifier, tiny_drafter, dtype, torch.device(device))
    assert next(model.parameters()).dtype == dtype
    d = task.target_dictionary
    samples = list(batches(task, device))
    reference, sources = decode_all(build_generator([model], d, DecodingPlan(), SEARCH), model, samples)
    known = {source_key(src, d.pad()): reference[sid] for sid, src in sources.items()}
    modes = {
        "lean greedy": DecodingPlan(lean_greedy=True),
        "SpecDec, always right": DecodingPlan(proposer=OracleDrafter(known, d.pad(), d.eos()), block_size=5),
        "SpecDec, always wrong": DecodingPlan(proposer=WrongDrafter(known, d), block_size=5),
        "SpecDec, trained drafter": DecodingPlan(proposer=make_proposer(drafter, d, model), block_size=drafter.trained_block_size,
                                             adaptive=True),
    }
    tolerance = TOLERANCE[dtype]
    for name, decoding in modes.items():
        ours, _ = decode_all(build_generator([model], d, decoding, SEARCH), model, samples)
        tally = compare(model, sources, reference, ours, d.pad(), d.eos(), tolerance)
        print(f"{dtype} {device} {name}: {tally.summary()}")
        assert tally.sentences == SENTENCES
        assert tally.violations == 0, f"{name}: a divergence where the verifier's top-1 was clear: {tally.summary()}"
        assert tally.identical >= SENTENCES // 2, f"{name}: {tally.summary()}"  # 2/3 or more on this tiny model


def test_bf16_cpu_follows_the_rule(demo_data, tiny_verifier, tiny_drafter):
    check_precision(demo_data, tiny_verifier, tiny_drafter, torch.bfloat16, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_cuda_half_precision_follows_the_rule(demo_data, tiny_verifier, tiny_drafter, dtype):
    check_precision(demo_data, tiny_verifier, tiny_drafter, dtype, "cuda")
