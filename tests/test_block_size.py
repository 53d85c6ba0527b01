"""k comes with the drafter: SpecDec, drafter-only decoding and the benchmark decode
with the k the drafter checkpoint records (tiny_drafter: 5; copies of it rewritten to
record 7, none, or args-style), unless --block-size overrides it, with a warning. (The hub:
test_foundation.py.)"""
import contextlib
import copy
import io
import logging
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import fairseq_specdec  # noqa: E402,F401
from fairseq import checkpoint_utils, options, tasks, utils  # noqa: E402
from fairseq.dataclass.utils import convert_namespace_to_omegaconf  # noqa: E402

from conftest import USER_DIR  # noqa: E402
from fairseq_specdec.benchmark import cli as benchmark  # noqa: E402
from fairseq_specdec.drafting.block_size import DEFAULT_BLOCK_SIZE  # noqa: E402

TRAINED_K = 5  # conftest.train_drafter's --block-size


def generation_setup(data, path, extra=()):
    """fairseq-generate's steps: task, models (no --block-size unless in ``extra``), generator, first batch."""
    parser = options.get_generation_parser()
    args = options.parse_args_and_arch(parser, [str(data), "--user-dir", USER_DIR, "--task", "specdec_translation",
                                                "--path", str(path), "--beam", "1", *extra])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    models, saved_cfg = checkpoint_utils.load_model_ensemble([str(path)], task=task)
    for model in models:
        model.eval()
    generator = task.build_generator(models, cfg.generation)
    task.load_dataset("test", task_cfg=saved_cfg.task)
    itr = task.get_batch_iterator(dataset=task.dataset("test"), max_sentences=8, disable_iterator_cache=True,
                                  max_positions=utils.resolve_max_positions(
                                      task.max_positions(), *[m.max_positions() for m in models]),
                                  ).next_epoch_itr(shuffle=False)
    return task, models, generator, next(iter(itr))


def drafter_recording(src, dst, edit):
    """A copy of the drafter checkpoint ``src`` whose saved config ``edit`` rewrote."""
    state = torch.load(src, map_location="cpu", weights_only=False)
    edit(state)
    torch.save(state, dst)
    return dst


def recorded(k):
    def edit(state):
        state["cfg"]["task"]["block_size"] = k
        state["cfg"]["model"].block_size = k  # the namespace of every training flag mirrors the task's
    return edit


def args_style(k):
    def edit(state):  # a checkpoint from before fairseq's hydra configs: only "args"
        args = copy.copy(state["cfg"]["model"])
        args.block_size = k
        state["args"], state["cfg"] = args, None
    return edit


def no_block_size(state):
    del state["cfg"]["task"]["block_size"]
    del state["cfg"]["model"].block_size


def k_warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == "fairseq_specdec.drafting.block_size" and r.levelno >= logging.WARNING]


def test_checkpoint_records_the_trained_k(tiny_drafter):
    state = checkpoint_utils.load_checkpoint_to_cpu(str(tiny_drafter))
    # where it is read (the model config fairseq hands to build_model) equals the task config
    assert state["cfg"]["task"]["block_size"] == state["cfg"]["model"].block_size == TRAINED_K


def test_specdec_decodes_with_the_drafters_k(demo_data, tiny_verifier, tiny_drafter, caplog):
    caplog.set_level(logging.INFO)
    task, models, generator, sample = generation_setup(demo_data["bin"], tiny_verifier,
                                                       ["--drafter-path", str(tiny_drafter)])
    assert task.cfg.block_size is None and generator.plan.block_size == generator.block_size == TRAINED_K
    drafted = []
    drafter = generator.drafter
    for name in ("propose", "propose_with_confidence"):  # fixed blocks call the first, adaptive ones the second
        method = getattr(drafter, name)
        setattr(drafter, name, lambda state, prefix, k, method=method: drafted.append(k) or method(state, prefix, k))
    generator.generate(models, sample)
    assert drafted and set(drafted) == {TRAINED_K}  # adaptive drafting asks for k, then verifies up to k
    assert not k_warnings(caplog)
    assert f"decoding with k={TRAINED_K}, the drafter's" in caplog.text


@pytest.mark.parametrize("edit,trained", [(recorded(7), 7), (args_style(7), 7), (recorded(None), DEFAULT_BLOCK_SIZE),
                                          (no_block_size, DEFAULT_BLOCK_SIZE)],
                         ids=["k7", "args-style-k7", "trained-with-the-default", "records-none"])
def test_specdec_reads_k_from_any_checkpoint(demo_data, tiny_verifier, tiny_drafter, tmp_path, caplog, edit, trained):
    drafter = drafter_recording(tiny_drafter, tmp_path / "drafter.pt", edit)
    task, _, generator, _ = generation_setup(demo_data["bin"], tiny_verifier, ["--drafter-path", str(drafter)])
    assert generator.plan.block_size == generator.block_size == trained
    # a checkpoint without any k is the one case worth a warning
    assert bool(k_warnings(caplog)) == (edit is no_block_size)


def test_explicit_block_size_wins_and_warns(demo_data, tiny_verifier, tiny_drafter, caplog):
    task, _, generator, _ = generation_setup(demo_data["bin"], tiny_verifier,
                                             ["--drafter-path", str(tiny_drafter), "--block-size", "3"])
    assert generator.plan.block_size == generator.block_size == 3
    (warning,) = k_warnings(caplog)
    assert "--block-size 3" in warning and f"k={TRAINED_K}" in warning
    caplog.clear()
    generation_setup(demo_data["bin"], tiny_verifier, ["--drafter-path", str(tiny_drafter), "--block-size",
                                                       str(TRAINED_K)])
    assert not k_warnings(caplog)  # the same k: nothing to warn about


@pytest.mark.parametrize("requested", [None, 7])
def test_drafter_only_decoding_uses_the_drafters_k(demo_data, tiny_drafter, caplog, requested):
    extra = [] if requested is None else ["--block-size", str(requested)]
    task, models, generator, sample = generation_setup(demo_data["bin"], tiny_drafter, extra)
    k = requested or TRAINED_K
    assert generator.plan.block_size == generator.block_size == k
    # the drafter's decoder reads a prefix plus k queries: fairseq filters targets to leave room for the k it
    # was trained with (a larger --block-size is checked against each batch's length limit)
    assert models[0].max_positions()[1] == models[0].decoder.max_positions() - TRAINED_K
    assert utils.resolve_max_positions(task.max_positions(), *[m.max_positions() for m in models]) == \
        models[0].max_positions()
    hypos = generator.generate(models, sample)
    # each iteration commits a whole block of k tokens, the last one up to its eos
    stats = generator.stats
    assert stats.iterations == sum(-(-len(h[0]["tokens"]) // k) for h in hypos)
    assert stats.committed_tokens == sum(len(h[0]["tokens"]) for h in hypos)
    assert stats.accepted_drafts == 0  # nothing is verified
    assert bool(k_warnings(caplog)) == (requested is not None)


@pytest.mark.parametrize("requested", [None, 3])
def test_benchmark_uses_the_drafters_k(demo_data, tiny_verifier, tiny_drafter, caplog, requested):
    argv = ["--data", str(demo_data["bin"]), "--verifier", str(tiny_verifier), "--drafter", str(tiny_drafter),
            "--modes", "specdec", "--max-sentences", "4", "--batch-sizes", "4", "--repeats", "1", "--warmup", "0",
            "--ctranslate2", "off", "--no-plots"]
    if requested is not None:
        argv += ["--block-size", str(requested)]
    with contextlib.redirect_stdout(io.StringIO()):
        report = benchmark.main(argv)
    k = requested or TRAINED_K
    assert report["config"]["block_size"] == k
    (row,) = report["rows"]
    assert len(row["accepted_histogram"]) <= k + 1  # never more than k drafts accepted
    assert bool(k_warnings(caplog)) == (requested is not None)


def test_drafter_only_decoding_equals_a_sentence_by_sentence_loop(demo_data, tiny_drafter):
    """Drafter-only decoding of a batch of 8 gives exactly the tokens of a plain loop over
    one sentence at a time: the drafter's argmax for k queries after the committed prefix,
    kept up to the first eos (forced at fairseq's length limit, here 200)."""
    task, models, generator, sample = generation_setup(demo_data["bin"], tiny_drafter)
    drafter, k, eos = generator.drafter, generator.block_size, task.target_dictionary.eos()
    with torch.no_grad():
        hypos = generator.generate(models, sample)
        for i, src in enumerate(sample["net_input"]["src_tokens"]):
            src = src[src.ne(task.source_dictionary.pad())].unsqueeze(0)
            encoder_out = drafter.start({"src_tokens": src, "src_lengths": torch.tensor([src.size(1)])})
            committed = []
            while not committed or committed[-1] != eos:
                lprobs = drafter.log_probs(encoder_out, torch.tensor([[eos] + committed]), k)[0]  # k x V
                for step, row in enumerate(lprobs, start=len(committed)):
                    token = eos if step >= 200 else int(row.argmax())
                    committed.append(token)
                    if token == eos:
                        break
            assert hypos[i][0]["tokens"].tolist() == committed, f"sentence {i}"


@pytest.mark.parametrize("extra", [[], ["--lean-greedy"]])
def test_decoding_a_verifier_through_the_task_keeps_every_position(demo_data, tiny_verifier, extra):
    """Only a drafter's decoder reads prefix + k queries: a verifier decoded through the
    task (stock or lean greedy) keeps all its target positions."""
    task, _models, _generator, _sample = generation_setup(demo_data["bin"], tiny_verifier, extra)
    assert task.max_positions()[1] == task.cfg.max_target_positions
