"""Lossless speculative decoding: with beta = 1, SpecDec's output is exactly greedy
decoding's (``--beam 1``) with the same verifier, whatever the drafter proposes.

Checked end to end with the real CLI (fairseq-generate) and in-process with the
generator the task builds, with a trained and an untrained Spec-Drafter, and with
scripted drafters: an oracle (every draft accepted), an adversary (none accepted), one
that always drafts eos, and under a small maximum length."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import fairseq_specdec  # noqa: E402,F401
from fairseq import checkpoint_utils, options, tasks  # noqa: E402
from fairseq.dataclass.utils import convert_namespace_to_omegaconf  # noqa: E402
from fairseq.sequence_generator import SequenceGenerator  # noqa: E402

from conftest import USER_DIR  # noqa: E402
from fairseq_specdec.drafting.base import NARDrafter  # noqa: E402
from fairseq_specdec.decoding.speculative_generator import LeanGreedyGenerator, SpeculativeGenerator  # noqa: E402
from fairseq_specdec.verification.static_rows import GraphOptions  # noqa: E402
from fairseq_specdec.decoding.stats import DecodingStats  # noqa: E402

K = 5
NUM_TEST = 200


# ---------------------------------------------------------------- helpers

def generation_cfg(demo_data, verifier, extra=()):
    parser = options.get_generation_parser()
    args = options.parse_args_and_arch(parser, [
        str(demo_data["bin"]), "--user-dir", USER_DIR, "--task", "specdec_translation",
        "--path", str(verifier), "--beam", "1", "--block-size", str(K), *extra])
    return convert_namespace_to_omegaconf(args)


def setup(demo_data, verifier, extra=()):
    """What fairseq-generate does before building its generator: task, verifier, test set."""
    cfg = generation_cfg(demo_data, verifier, extra)
    task = tasks.setup_task(cfg.task)
    models, saved_cfg = checkpoint_utils.load_model_ensemble([str(verifier)], task=task)
    for model in models:
        model.eval()
    task.load_dataset("test", task_cfg=saved_cfg.task)
    return cfg, task, models


def batches(task, batch_size):
    """The test set in fairseq-generate's order (by length), batch_size sentences a batch."""
    itr = task.get_batch_iterator(
        dataset=task.dataset("test"), max_sentences=batch_size,
        max_positions=(1024, 1024), ignore_invalid_inputs=False, disable_iterator_cache=True,
    ).next_epoch_itr(shuffle=False)
    return list(itr)


def lossless_batches(task):
    """The batches the lossless tests decode: all 200 test sentences in batches of 16, and
    every third sentence (67, short to long) one at a time. Batch 1 is the slow one; exact
    tokens at batch 1 are also asserted on the scripted verifier (test_scripted_decoding)."""
    return {1: batches(task, 1)[::3], 16: batches(task, 16)}



def decode(generator, models, samples):
    """id -> hypothesis dict (the single best)."""
    results = {}
    with torch.no_grad():
        for sample in samples:
            hypos = generator.generate(models, sample)
            for i, sid in enumerate(sample["id"].tolist()):
                assert len(hypos[i]) >= 1
                results[sid] = hypos[i][0]
    return results


def greedy(models, tgt_dict, samples, **kw):
    return decode(SequenceGenerator(models, tgt_dict, beam_size=1, **kw), models, samples)


def assert_same_tokens(got, want):
    assert sorted(got) == sorted(want)
    differ = [sid for sid in want if got[sid]["tokens"].tolist() != want[sid]["tokens"].tolist()]
    assert not differ, (f"{len(differ)} of {len(want)} outputs differ from greedy, e.g. id {differ[0]}: "
                        f"{got[differ[0]]['tokens'].tolist()} vs {want[differ[0]]['tokens'].tolist()}")


def strip(row, pad):
    return [t for t in row if t != pad]


class ScriptedDrafter:
    """A drafter with the interface of NARDrafter that knows greedy's outputs.

    ``policy(committed, greedy_tokens, k)`` returns the k drafted tokens. Sources are the
    key: the state is the list of each row's unpadded source tokens.
    """

    def __init__(self, greedy_by_source, tgt_dict, policy):
        self.greedy = greedy_by_source
        self.pad, self.eos = tgt_dict.pad(), tgt_dict.eos()
        self.vocab, self.nspecial = len(tgt_dict), tgt_dict.nspecial
        self.policy = policy
        self.calls = 0

    def start(self, net_input, verifier_encoder_out=None):
        return [tuple(strip(row, self.pad)) for row in net_input["src_tokens"].tolist()]

    def select(self, state, rows):
        return [state[i] for i in rows.tolist()]

    def observe(self, state, states, tokens, counts):
        return state

    def max_positions(self):
        return 100_000

    def propose(self, state, prefix, k):
        self.calls += 1
        assert prefix.size(0) == len(state)
        drafts = []
        for key, row in zip(state, prefix.tolist()):
            tokens = strip(row, self.pad)
            assert tokens[0] == self.eos, "prefixes start with the BOS (eos)"
            committed = tokens[1:]
            target = self.greedy[key]
            assert committed == target[: len(committed)], "the committed prefix left greedy's path"
            drafts.append(self.policy(self, committed, target, k))
        return torch.tensor(drafts, dtype=torch.long, device=prefix.device)


def oracle(self, committed, target, k):
    n = len(committed)
    cont = target[n:n + k]
    return cont + [self.eos] * (k - len(cont))


def adversary(self, committed, target, k):
    """A wrong first token, then greedy's continuation (accepting those would be a bug)."""
    n = len(committed)
    right = target[n]
    wrong = self.nspecial + (right - self.nspecial + 1) % (self.vocab - self.nspecial)
    assert wrong != right and wrong != self.eos
    cont = target[n + 1:n + k]
    return [wrong] + cont + [self.eos] * (k - 1 - len(cont))


def always_eos(self, committed, target, k):
    return [self.eos] * k


def oracle_counts(lengths, k):
    """Iterations and accepted drafts when every draft is greedy's token."""
    iterations = accepted = 0
    for remaining in lengths:
        while True:
            iterations += 1
            if remaining <= k:  # eos among the drafts: accepted, ends the sentence
                accepted += remaining
                break
            accepted += k
            if remaining == k + 1:  # all drafts accepted, the verifier's token is eos
                break
            remaining -= k + 1
    return iterations, accepted


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def verifier_setup(demo_data, tiny_verifier):
    cfg, task, models = setup(demo_data, tiny_verifier)
    return {"cfg": cfg, "task": task, "models": models, "tgt_dict": task.target_dictionary}


@pytest.fixture(scope="module")
def samples(verifier_setup):
    return lossless_batches(verifier_setup["task"])


@pytest.fixture(scope="module")
def greedy_out(verifier_setup, samples):
    models, tgt_dict = verifier_setup["models"], verifier_setup["tgt_dict"]
    out = {bsz: greedy(models, tgt_dict, s) for bsz, s in samples.items()}
    assert len(out[16]) == NUM_TEST and len(out[1]) == (NUM_TEST + 2) // 3
    return out


def by_source(samples, hypos, pad):
    table = {}
    for sample in samples:
        for sid, row in zip(sample["id"].tolist(), sample["net_input"]["src_tokens"].tolist()):
            key = tuple(strip(row, pad))
            toks = hypos[sid]["tokens"].tolist()
            assert table.setdefault(key, toks) == toks
    return table


# ---------------------------------------------------------------- real drafters, in-process

@pytest.mark.parametrize("batch_size", [1, 16])
@pytest.mark.parametrize("which", ["tiny_drafter", "shared_encoder_drafter"])
def test_task_generator_equals_greedy(request, demo_data, tiny_verifier, samples, greedy_out, which, batch_size):
    drafter = request.getfixturevalue(which)
    cfg, task, models = setup(demo_data, tiny_verifier, ["--drafter-path", str(drafter)])
    generator = task.build_generator(models, cfg.generation)
    assert isinstance(generator, SpeculativeGenerator)
    assert isinstance(generator.drafter, NARDrafter) and generator.beta == 1
    # only the drafter trained with --share-verifier-encoder skips its own encoder pass
    assert generator.drafter.reuses_verifier_encoder == (which == "shared_encoder_drafter")
    # the hub builds a generator per call: the drafting side (and its encoder check) is built once
    assert task.build_generator(models, cfg.generation).drafter is generator.drafter
    got = decode(generator, models, samples[batch_size])
    assert_same_tokens(got, greedy_out[batch_size])
    stats = task.decoding_stats
    assert stats.sentences == len(got)
    assert stats.committed_tokens == sum(len(h["tokens"]) for h in got.values())
    print(f"{which} batch {batch_size}: {stats.accepted_drafts / stats.iterations:.3f} accepted drafts per iteration")


def test_training_raises_acceptance(demo_data, tiny_verifier, untrained_drafter, tiny_drafter, subset):
    """The trained drafter's drafts are accepted more often than an untrained one's, and
    both decode losslessly (wrong drafts of every kind are on the scripted verifier too)."""
    chosen, want = subset
    mean = {}
    for name, drafter in (("untrained", untrained_drafter), ("trained", tiny_drafter)):
        cfg, task, models = setup(demo_data, tiny_verifier, ["--drafter-path", str(drafter)])
        assert_same_tokens(decode(task.build_generator(models, cfg.generation), models, chosen), want)
        mean[name] = task.decoding_stats.accepted_drafts / task.decoding_stats.iterations
    assert mean["trained"] > 1.5 * mean["untrained"], mean


@pytest.mark.parametrize("batch_size", [1, 16])
def test_lean_greedy_equals_greedy(demo_data, tiny_verifier, samples, greedy_out, batch_size):
    """--lean-greedy (the verifier's preallocated cache, no drafts) gives greedy's tokens
    and scores."""
    cfg, task, models = setup(demo_data, tiny_verifier, ["--lean-greedy"])
    generator = task.build_generator(models, cfg.generation)
    assert isinstance(generator, LeanGreedyGenerator)
    got = decode(generator, models, samples[batch_size])
    want = greedy_out[batch_size]
    assert_same_tokens(got, want)
    for sid in want:
        # tokens are bitwise greedy's; a score is a float sum in another order (padded rows:
        # fairseq's incremental forward, ours per-row offsets): up to 1.4e-5 measured on an
        # Intel Xeon 2-core VM, under 1e-5 on AMD EPYC
        assert torch.allclose(got[sid]["positional_scores"], want[sid]["positional_scores"], atol=5e-5)
        assert abs(float(got[sid]["score"]) - float(want[sid]["score"])) < 1e-5


# ---------------------------------------------------------------- the real CLI

def cli(cmd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-4000:]}"
    return proc


def generate_cli(demo_data, verifier, batch_size, extra=()):
    proc = cli(["fairseq-generate", demo_data["bin"], "--user-dir", USER_DIR, "--path", verifier,
                "--beam", "1", "--batch-size", str(batch_size), "--gen-subset", "test", *extra])
    hyps, pos = {}, {}
    for line in proc.stdout.splitlines():
        if line.startswith("H-"):
            head, score, tokens = line.split("\t")
            hyps[int(head[2:])] = (float(score), tokens)
        elif line.startswith("P-"):
            head, scores = line.split("\t")
            pos[int(head[2:])] = [float(x) for x in scores.split()]
    return hyps, pos, proc


def test_cli_speculative_equals_beam1(demo_data, tiny_verifier, tiny_drafter):
    """fairseq-generate --drafter-path prints the H-/P- lines of fairseq-generate --beam 1."""
    want, want_pos, _ = generate_cli(demo_data, tiny_verifier, 16)
    assert sorted(want) == list(range(NUM_TEST))
    got, got_pos, proc = generate_cli(demo_data, tiny_verifier, 16, [
        "--task", "specdec_translation", "--drafter-path", tiny_drafter, "--block-size", str(K)])
    assert sorted(got) == sorted(want)
    assert {i: t for i, (_, t) in got.items()} == {i: t for i, (_, t) in want.items()}
    for i in want:
        assert abs(got[i][0] - want[i][0]) <= 2e-4, (i, got[i][0], want[i][0])
        assert len(got_pos[i]) == len(want_pos[i])
        assert max(abs(a - b) for a, b in zip(got_pos[i], want_pos[i])) <= 2e-4
    # the run reports its acceptance statistics
    assert re.search(r"SpecDec: 200 sentences \| [\d.]+ tokens per iteration", proc.stdout + proc.stderr)


# ---------------------------------------------------------------- scripted drafters

def scripted_run(verifier_setup, samples, hypos, policy, **kw):
    models, tgt_dict = verifier_setup["models"], verifier_setup["tgt_dict"]
    drafter = ScriptedDrafter(by_source(samples, hypos, tgt_dict.pad()), tgt_dict, policy)
    stats = DecodingStats()
    generator = SpeculativeGenerator(models, tgt_dict, drafter, block_size=K, beta=1, stats=stats, **kw)
    return decode(generator, models, samples), stats, drafter


@pytest.fixture(scope="module")
def subset(samples, greedy_out):
    """The first 64 sentences in batches of 16, and greedy's outputs for them."""
    chosen = samples[16][:4]
    ids = [sid for s in chosen for sid in s["id"].tolist()]
    return chosen, {sid: greedy_out[16][sid] for sid in ids}


# the verifier with its own cache, and over static buffers (the --cuda-graphs path, run eagerly)
VERIFIER_PATHS = pytest.mark.parametrize("graphs", [None, GraphOptions(capture=False)], ids=["cache", "static"])


@VERIFIER_PATHS
def test_oracle_drafter_gets_every_draft_accepted(verifier_setup, subset, graphs):
    chosen, want = subset
    got, stats, drafter = scripted_run(verifier_setup, chosen, want, oracle, graphs=graphs)
    assert_same_tokens(got, want)
    lengths = [len(h["tokens"]) for h in want.values()]
    iterations, accepted = oracle_counts(lengths, K)
    assert stats.iterations == iterations
    assert stats.accepted_drafts == accepted
    assert stats.committed_tokens == sum(lengths)
    # every iteration but a sentence's last accepts all k drafts
    mean = stats.accepted_drafts / stats.iterations
    assert mean > K - 1.5, mean
    assert stats.accepted_histogram[K] >= stats.iterations - len(want)


@VERIFIER_PATHS
def test_adversarial_drafter_gets_nothing_accepted(verifier_setup, subset, graphs):
    chosen, want = subset
    got, stats, drafter = scripted_run(verifier_setup, chosen, want, adversary, graphs=graphs)
    assert_same_tokens(got, want)
    assert stats.accepted_drafts == 0
    assert stats.iterations == sum(len(h["tokens"]) for h in want.values())  # one token per iteration
    assert stats.accepted_histogram == [stats.iterations]


def test_eos_drafted_first_is_rejected(verifier_setup, subset):
    chosen, want = subset
    got, stats, _ = scripted_run(verifier_setup, chosen, want, always_eos)
    assert_same_tokens(got, want)
    assert all(len(h["tokens"]) >= 2 for h in got.values())  # never an empty translation
    # one token per iteration: the verifier's, until greedy's own eos, which is the drafted one
    assert stats.iterations == sum(len(h["tokens"]) for h in want.values())
    assert stats.accepted_drafts == len(want)


def test_min_len_with_eos_drafts(verifier_setup, subset):
    chosen, _ = subset
    models, tgt_dict = verifier_setup["models"], verifier_setup["tgt_dict"]
    want = greedy(models, tgt_dict, chosen, min_len=4)
    got, _, _ = scripted_run(verifier_setup, chosen, want, always_eos, min_len=4)
    assert_same_tokens(got, want)
    assert min(len(h["tokens"]) for h in got.values()) >= 5  # 4 tokens + eos


@pytest.mark.parametrize("max_len_b", [3, 7])
def test_max_length_reached(verifier_setup, subset, tiny_drafter, max_len_b):
    chosen, _ = subset
    models, tgt_dict = verifier_setup["models"], verifier_setup["tgt_dict"]
    want = greedy(models, tgt_dict, chosen, max_len_b=max_len_b)
    lengths = [len(h["tokens"]) for h in want.values()]
    assert max(lengths) == max_len_b + 1  # the limit binds: max_len_b tokens, then the forced eos
    got, stats, _ = scripted_run(verifier_setup, chosen, want, oracle, max_len_b=max_len_b)
    assert_same_tokens(got, want)
    real = checkpoint_utils.load_model_ensemble([str(tiny_drafter)], task=verifier_setup["task"])[0][0].eval()
    generator = SpeculativeGenerator(models, tgt_dict, NARDrafter(real, tgt_dict), block_size=K, max_len_b=max_len_b)
    got = decode(generator, models, chosen)
    assert_same_tokens(got, want)
    for h in got.values():
        assert h["tokens"][-1].item() == tgt_dict.eos()
        assert len(h["tokens"]) <= max_len_b + 1


def test_hypotheses_have_sequence_generator_format(verifier_setup, subset, tiny_drafter):
    chosen, want = subset
    models, tgt_dict = verifier_setup["models"], verifier_setup["tgt_dict"]
    real = checkpoint_utils.load_model_ensemble([str(tiny_drafter)], task=verifier_setup["task"])[0][0].eval()
    generator = SpeculativeGenerator(models, tgt_dict, NARDrafter(real, tgt_dict), block_size=K, beta=1)
    with torch.no_grad():
        for sample in chosen:
            spec = generator.generate(models, sample)
            ref = SequenceGenerator(models, tgt_dict, beam_size=1).generate(models, sample)
            assert len(spec) == len(ref) == sample["id"].numel()
            for s, r in zip(spec, ref):
                assert len(s) == 1
                assert set(s[0]) == set(r[0])
                assert torch.equal(s[0]["tokens"], r[0]["tokens"])
                assert s[0]["tokens"].dtype == r[0]["tokens"].dtype
                assert s[0]["positional_scores"].shape == r[0]["positional_scores"].shape
                assert torch.allclose(s[0]["positional_scores"], r[0]["positional_scores"], atol=1e-4, rtol=0)
                assert abs(float(s[0]["score"]) - float(r[0]["score"])) < 1e-4


@pytest.mark.parametrize("opts", [
    dict(temperature=2.0, unk_penalty=1.5, len_penalty=0.5, min_len=2),
    dict(normalize_scores=False, max_len_a=0.5, max_len_b=4),
])
def test_search_options_match_sequence_generator(verifier_setup, subset, tiny_drafter, opts):
    """fairseq's other greedy options (temperature, unk penalty, length penalty, min/max length,
    unnormalized scores) give the same tokens and scores as SequenceGenerator's."""
    chosen, _ = subset
    models, tgt_dict = verifier_setup["models"], verifier_setup["tgt_dict"]
    want = greedy(models, tgt_dict, chosen, **opts)
    real = checkpoint_utils.load_model_ensemble([str(tiny_drafter)], task=verifier_setup["task"])[0][0].eval()
    for drafter in (NARDrafter(real, tgt_dict),
                    ScriptedDrafter(by_source(chosen, want, tgt_dict.pad()), tgt_dict, oracle)):
        got = decode(SpeculativeGenerator(models, tgt_dict, drafter, block_size=K, **opts), models, chosen)
        assert_same_tokens(got, want)
        for sid, h in want.items():
            assert torch.allclose(got[sid]["positional_scores"], h["positional_scores"], atol=1e-4, rtol=0)
            assert abs(float(got[sid]["score"]) - float(h["score"])) < 1e-4


def test_relaxed_mode_valid_output_and_longer_acceptance(demo_data, tiny_verifier, tiny_drafter, samples):
    runs = {}
    for beta, tau in ((1, 1.0), (3, 1.0)):
        # fixed blocks: adaptive drafting's greedy steps depend on the machine's timing, and they
        # would make the accepted drafts per iteration compared below depend on it too
        cfg, task, models = setup(demo_data, tiny_verifier, [
            "--drafter-path", str(tiny_drafter), "--beta", str(beta), "--tau", str(tau), "--fixed-block"])
        generator = task.build_generator(models, cfg.generation)
        assert (generator.beta, generator.tau) == (beta, tau)
        runs[beta] = (decode(generator, models, samples[16]), task.decoding_stats)
    tgt_dict = task.target_dictionary
    relaxed, stats = runs[3]
    assert len(relaxed) == NUM_TEST
    forbidden = {tgt_dict.pad(), tgt_dict.bos(), tgt_dict.unk()}
    for h in relaxed.values():
        toks = h["tokens"].tolist()
        assert toks[-1] == tgt_dict.eos() and tgt_dict.eos() not in toks[:-1]
        assert not forbidden & set(toks)
        assert len(toks) >= 2
        assert torch.isfinite(h["positional_scores"]).all()
    lossless_stats = runs[1][1]
    relaxed_mean = stats.accepted_drafts / stats.iterations
    lossless_mean = lossless_stats.accepted_drafts / lossless_stats.iterations
    print(f"mean accepted drafts: lossless {lossless_mean:.3f}, beta=3 tau=1 {relaxed_mean:.3f}")
    assert relaxed_mean >= lossless_mean, (relaxed_mean, lossless_mean)
    # relaxing changes some outputs (otherwise beta/tau would not reach the rule)
    lossless = runs[1][0]
    assert any(relaxed[i]["tokens"].tolist() != lossless[i]["tokens"].tolist() for i in lossless)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@CUDA
@pytest.mark.parametrize("batch_size", [1, 16])
def test_lossless_on_cuda(demo_data, tiny_verifier, tiny_drafter, chain_drafter, batch_size):
    """On a GPU, SpecDec (real drafters) and the lean greedy give fairseq greedy's tokens,
    with and without CUDA graphs (--cuda-graphs: the verifier's block forward and the
    chain drafter's forwards recorded and replayed; the Spec-Drafter runs without)."""
    from fairseq import utils

    for extra, kind in ((["--drafter-path", str(tiny_drafter)], SpeculativeGenerator),
                        (["--drafter-path", str(tiny_drafter), "--cuda-graphs"], SpeculativeGenerator),
                        (["--drafter-path", str(chain_drafter), "--cuda-graphs"], SpeculativeGenerator),
                        (["--lean-greedy"], LeanGreedyGenerator),
                        (["--lean-greedy", "--cuda-graphs"], LeanGreedyGenerator)):
        cfg, task, models = setup(demo_data, tiny_verifier, extra)
        models = [m.cuda() for m in models]
        chosen = [utils.move_to_cuda(s) for s in lossless_batches(task)[batch_size]]
        want = greedy(models, task.target_dictionary, chosen)
        generator = task.build_generator(models, cfg.generation)
        assert isinstance(generator, kind)
        assert_same_tokens(decode(generator, models, chosen), want)
        if "--cuda-graphs" in extra:  # graphs were recorded, once per shape
            assert generator.verifier.pool.by_rows and all(r.graphs.graphs for r in generator.verifier.pool.by_rows.values())
            assert_same_tokens(decode(generator, models, chosen), want)  # replayed on the next batches


@CUDA
@pytest.mark.parametrize("policy", [oracle, adversary], ids=["oracle", "adversary"])
def test_scripted_drafters_through_cuda_graphs(demo_data, tiny_verifier, subset, policy):
    """Every draft accepted, or none, through the recorded verifier graphs at batch 16
    (rows leave as they finish) and batch 1: greedy's tokens, the same acceptance as
    without graphs."""
    from fairseq import utils

    _cfg, task, models = setup(demo_data, tiny_verifier)  # its own copy, moved to the GPU
    on_gpu = {"models": [m.cuda() for m in models], "tgt_dict": task.target_dictionary}
    chosen, _want = subset
    single = [utils.move_to_cuda(s) for s in batches(task, 1)[:40:4]]
    for samples in ([utils.move_to_cuda(s) for s in chosen], single):
        expected = greedy(on_gpu["models"], task.target_dictionary, samples)
        got, stats, _ = scripted_run(on_gpu, samples, expected, policy, graphs=GraphOptions())
        assert_same_tokens(got, expected)
        _, eager_stats, _ = scripted_run(on_gpu, samples, expected, policy)
        assert stats.accepted_histogram == eager_stats.accepted_histogram
