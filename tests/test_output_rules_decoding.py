"""--prefix-size and --no-repeat-ngram-size on the tiny trained models (tests/conftest.py):
every generator the task builds (lean greedy; SpecDec with the Spec-Drafter, the chain
drafter, the n-gram drafter, drafters that are always right and always wrong; drafter-only
decoding) gives the tokens and scores of a plain greedy reference with the same rule:
fairseq's greedy ``SequenceGenerator`` with the same ``prefix_tokens``, and fairseq's greedy
with a correct n-gram blocker (``plain_rules``; fairseq 0.12's own Python blocker bans nothing)."""
import math

import pytest
import torch
from fairseq.sequence_generator import SequenceGenerator

from fairseq_specdec.decoding.speculative_generator import LeanGreedyGenerator, SpeculativeGenerator
from plain_rules import greedy_with_ban, plain_banned, repeated_ngrams
from test_block_size import generation_setup
from test_speculative_lossless import (  # helpers only: pytest would collect imported tests
    K, ScriptedDrafter, adversary, batches, by_source, oracle, setup)

PREFIX = 3  # --prefix-size: the first 3 target tokens
NGRAM = 2


@pytest.fixture(scope="module")
def verifier_run(demo_data, tiny_verifier):
    """The task and verifier, and the batches decoded here: 64 sentences in batches of 16 and 8 one at a time."""
    _cfg, task, models = setup(demo_data, tiny_verifier)
    return task, models, {16: batches(task, 16)[:4], 1: batches(task, 1)[:40:5]}


def prefix_size(sample, pad):
    """fairseq-generate's forced prefix: the first PREFIX target tokens."""
    return sample["target"][:, :PREFIX]


def ragged(sample, pad):
    """Prefixes of different lengths, as a hub caller may pass them: row j forces its first
    j % 5 target tokens (padding after them), row 0 its whole target, eos included."""
    target = sample["target"]
    lengths = [int(target[0].ne(pad).sum())] + [j % 5 for j in range(1, target.size(0))]
    prefix = torch.full((target.size(0), max(lengths)), pad, dtype=torch.long)
    for j, n in enumerate(lengths):
        prefix[j, :n] = target[j, :n]
    return prefix


def decode(generator, models, samples, prefix_of=None):
    """id -> hypothesis; ``prefix_of(sample, pad)``: the batch's forced prefixes (None: none)."""
    results = {}
    with torch.no_grad():
        for sample in samples:
            prefix = prefix_of(sample, generator.pad) if prefix_of is not None else None
            for sid, hypos in zip(sample["id"].tolist(), generator.generate(models, sample, prefix_tokens=prefix)):
                results[sid] = hypos[0]
    return results


def assert_same(got, want):
    assert sorted(got) == sorted(want)
    for sid, w in want.items():
        assert got[sid]["tokens"].tolist() == w["tokens"].tolist(), f"id {sid}"
        # float sums in another order: see test_lean_greedy_equals_greedy (up to 1.4e-5 measured)
        assert torch.allclose(got[sid]["positional_scores"], w["positional_scores"], atol=5e-5, rtol=0), f"id {sid}"
        assert abs(float(got[sid]["score"]) - float(w["score"])) < 1e-5


@pytest.fixture(scope="module")
def task_generators(demo_data, tiny_verifier, tiny_drafter, chain_drafter):
    """flags -> the task's generators for them (lean greedy, SpecDec with the Spec-Drafter, the
    chain drafter and the n-gram drafter) and their models, built once per set of flags."""
    built = {}

    def build(flags):
        if flags not in built:
            generators = {}
            for name, extra in (("lean", ["--lean-greedy"]), ("spec-drafter", ["--drafter-path", str(tiny_drafter)]),
                                ("chain", ["--drafter-path", str(chain_drafter)]),
                                ("ngram", ["--ngram-drafter", "--block-size", str(K)])):
                cfg, task, models = setup(demo_data, tiny_verifier, [*flags, *extra])
                generators[name] = task.build_generator(models, cfg.generation)
            assert isinstance(generators["lean"], LeanGreedyGenerator)
            assert isinstance(generators["ngram"], SpeculativeGenerator)
            built[flags] = generators, models
        return built[flags]
    return build


def plugin_generators(task_generators, tgt_dict, samples, want, flags):
    """The task's generators for ``flags``, and SpecDec with the scripted drafters (always
    right, always wrong) over ``want``."""
    generators, models = task_generators(flags)
    known = by_source(samples, want, tgt_dict.pad())
    search = {"no_repeat_ngram_size": NGRAM} if "--no-repeat-ngram-size" in flags else {}
    scripted = {name: SpeculativeGenerator(models, tgt_dict, ScriptedDrafter(known, tgt_dict, policy),
                                           block_size=K, **search)
                for name, policy in (("right", oracle), ("wrong", adversary))}
    return {**generators, **scripted}, models


@pytest.mark.parametrize("batch_size, prefix_of", [(1, prefix_size), (16, prefix_size), (16, ragged)],
                         ids=["prefix-size-batch1", "prefix-size-batch16", "ragged-batch16"])
def test_prefix_equals_fairseq_greedy(task_generators, verifier_run, batch_size, prefix_of):
    task, models, by_batch = verifier_run
    samples, tgt_dict = by_batch[batch_size], task.target_dictionary
    want = decode(SequenceGenerator(models, tgt_dict, beam_size=1), models, samples, prefix_of)
    free = decode(SequenceGenerator(models, tgt_dict, beam_size=1), models, samples)
    assert sum(want[i]["tokens"].tolist() != free[i]["tokens"].tolist() for i in want) > len(want) // 4  # it binds
    built, models = plugin_generators(task_generators, tgt_dict, samples, want, ("--prefix-size", str(PREFIX)))
    for name, generator in built.items():
        assert_same(decode(generator, models, samples, prefix_of), want)


@pytest.mark.parametrize("batch_size", [1, 16])
def test_no_repeat_ngram_equals_greedy_with_a_correct_blocker(task_generators, verifier_run, batch_size):
    task, models, by_batch = verifier_run
    samples, tgt_dict = by_batch[batch_size], task.target_dictionary
    reference = greedy_with_ban(models, tgt_dict, NGRAM)
    want = decode(reference, models, samples)
    free = decode(SequenceGenerator(models, tgt_dict, beam_size=1), models, samples)
    # the ban changes greedy's choices on this data, and leaves no repeated n-gram
    assert reference.repeat_ngram_blocker.changed > 0
    assert sum(repeated_ngrams(h["tokens"].tolist(), NGRAM) for h in free.values()) > 0
    assert all(repeated_ngrams(h["tokens"].tolist()[:-1], NGRAM) == 0 for h in want.values())
    built, models = plugin_generators(task_generators, tgt_dict, samples, want,
                                      ("--no-repeat-ngram-size", str(NGRAM)))
    for name, generator in built.items():
        assert generator.ngram_size == NGRAM, name
        assert_same(decode(generator, models, samples), want)


def drafter_only_by_hand(drafter, encoder_out, k, prefix, ngram, eos, pad, min_len=1, max_len=200):
    """One sentence decoded by the drafter alone, one position at a time: its tokens, their
    scores and how often the ban took the drafter's top token away."""
    committed, scores, changed = [], [], 0
    while not committed or committed[-1] != eos:
        lprobs = drafter.log_probs(encoder_out, torch.tensor([[eos] + committed]), k)[0]  # k x V
        for step, row in enumerate(lprobs.clone(), start=len(committed)):
            row[pad] = -math.inf
            forced = int(prefix[step]) if step < prefix.size(0) else pad
            if forced != pad:
                token = forced
            elif step >= max_len:
                token = eos
            else:
                banned = sorted(plain_banned([eos] + committed, ngram)) if ngram else []
                changed += int(row.argmax()) in banned
                row[banned] = -math.inf
                if prefix.size(0) <= step < min_len:  # --min-len applies from the prefix width on
                    row[eos] = -math.inf
                token = int(row.argmax())
            committed.append(token)
            scores.append(float(row[token]))
            if token == eos:
                break
    return committed, scores, changed


@pytest.mark.parametrize("ngram", [0, NGRAM], ids=["prefix", "prefix-and-ban"])
def test_drafter_only_decoding_with_prefix_and_ban(demo_data, tiny_drafter, ngram):
    """Drafter-only decoding with a prefix (and the ban) equals a loop over one sentence and
    one position at a time: the forced token (with the drafter's log-prob), else the argmax
    among the tokens the ban leaves."""
    flags = ["--prefix-size", "3", "--no-repeat-ngram-size", str(ngram)]
    task, models, generator, sample = generation_setup(demo_data["bin"], tiny_drafter, flags)
    assert generator.ngram_size == ngram
    drafter, k = generator.drafter, generator.block_size
    eos, pad = task.target_dictionary.eos(), task.target_dictionary.pad()
    prefix = sample["target"][:, :3]
    changed = 0
    with torch.no_grad():
        hypos = generator.generate(models, sample, prefix_tokens=prefix)
        for i, src in enumerate(sample["net_input"]["src_tokens"]):
            src = src[src.ne(pad)].unsqueeze(0)
            encoder_out = drafter.start({"src_tokens": src, "src_lengths": torch.tensor([src.size(1)])})
            tokens, scores, bans = drafter_only_by_hand(drafter, encoder_out, k, prefix[i], ngram, eos, pad)
            assert hypos[i][0]["tokens"].tolist() == tokens, f"sentence {i}"
            assert hypos[i][0]["positional_scores"].tolist() == pytest.approx(scores, abs=1e-5)
            changed += bans
    assert (changed > 0) == (ngram > 0)  # the ban took effect on this data


def test_hub_generate_with_prefix_tokens_and_ban(demo_data, tiny_verifier, tiny_drafter):
    """The hub passes ``prefix_tokens`` (``inference_step_args``) and ``no_repeat_ngram_size``
    through to SpecDec: fairseq's greedy tokens with the prefix, no repeated bigram with the ban."""
    import fairseq_specdec.hub
    from fairseq.models.transformer import TransformerModel

    root = str(tiny_verifier.parent), tiny_verifier.name, str(demo_data["bin"])
    stock = TransformerModel.from_pretrained(*root)
    spec = fairseq_specdec.hub.from_pretrained(*root, drafter_path=str(tiny_drafter))
    lines = (demo_data["root"] / "prep" / "bpe" / "test.en").read_text().splitlines()[:3]
    for line in lines:
        tokens = [spec.encode(line)]
        free = stock.generate(tokens, beam=1)[0][0]["tokens"]
        prefix = {"prefix_tokens": free[1:3].flip(0).unsqueeze(0)}  # greedy's 2nd and 3rd tokens, swapped
        want = stock.generate(tokens, beam=1, inference_step_args=prefix)[0][0]["tokens"].tolist()
        assert want[:2] == free[1:3].flip(0).tolist()
        assert spec.generate(tokens, inference_step_args=prefix)[0][0]["tokens"].tolist() == want
        banned = spec.generate(tokens, no_repeat_ngram_size=NGRAM)[0][0]["tokens"].tolist()
        assert repeated_ngrams(banned[:-1], NGRAM) == 0
