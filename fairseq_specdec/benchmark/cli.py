"""Benchmark SpecDec against greedy and beam search (and CTranslate2) in one process.

For one test set and one verifier/drafter pair, every decoding mode runs in the same
process, interleaved (each repeat runs every mode once, in turn) after a warm-up; the
median time of the repeats is reported, with BLEU, speedups, acceptance and memory:

    python -m fairseq_specdec.benchmark --data BIN --verifier V.pt --drafter D.pt \
        --batch-sizes 1,8,32 --out-dir bench/

``--bounds`` adds SpecDec with perfect drafts (``benchmark.modes``): how fast it would be if
the drafter were always right, with and without the drafter's cost. See ``benchmark.report``
for the outputs (markdown table, benchmark.json, PNG plots) and
``benchmark.ct2`` for the CTranslate2 peer.
"""
import gc
import logging
import os
import resource
import statistics
import sys
import time
import warnings
from argparse import Namespace
from typing import Dict, List, Optional

import torch

import fairseq_specdec  # noqa: F401  (registers the task; allow-lists checkpoint classes)
from fairseq import checkpoint_utils, tasks, utils
from fairseq.data import BaseWrapperDataset
from fairseq_specdec.benchmark import ct2 as peer, report as reporting
from fairseq_specdec.benchmark.options import (  # noqa: F401  (DEFAULT_MAX_LEN_*, parse_*: this module's API too)
    DEFAULT_MAX_LEN_A, DEFAULT_MAX_LEN_B, BenchmarkError, _check_args, _languages, build_parser, parse_batch_sizes,
    parse_modes)
from fairseq_specdec.benchmark.modes import (
    CT2_MODES, MODES, NEEDS_DRAFTER, ORACLE_MODES, SPECDEC_MODES, count_at_limit, known_outputs, length_limits,
    load_ngram_index, make_decoder)
from fairseq_specdec.decoding.plan import check_drafter_block_size
from fairseq_specdec.drafting.block_size import decoding_block_size, ngram_block_size, trained_block_size
from fairseq_specdec.drafting.draft_vocab import load_shortlist
from fairseq_specdec.drafting.loading import load_drafter, place_like
from fairseq_specdec.drafting.kinds import kind_of, require_draft_vocab
from fairseq_specdec.decoding.stats import DecodingStats

logger = logging.getLogger("fairseq_specdec.benchmark")

class FirstN(BaseWrapperDataset):
    """The first ``n`` sentences (by id) of a dataset, batched in the dataset's own order."""

    def __init__(self, dataset, n: int):
        super().__init__(dataset)
        self.n = min(n, len(dataset))

    def __len__(self):
        return self.n

    def ordered_indices(self):
        indices = self.dataset.ordered_indices()
        return indices[indices < self.n]


def load_setup(args, src: str, tgt: str):
    """The task (``specdec_translation`` on the data directory), verifier, drafter and n-gram index."""
    # the legacy (argparse) route: the interpolated fields (common.seed, dataset.*) set here
    task = tasks.setup_task(Namespace(
        task="specdec_translation", data=args.data, source_lang=src, target_lang=tgt,
        block_size=args.block_size, seed=1, dataset_impl=None, train_subset="train", required_seq_len_multiple=1))
    try:
        task.load_dataset(args.subset)
    except FileNotFoundError as err:
        raise BenchmarkError(f"--subset {args.subset}: {err}") from err
    try:
        models, _ = checkpoint_utils.load_model_ensemble([args.verifier], task=task)
    except Exception as err:
        raise BenchmarkError(f"--verifier {args.verifier!r}: cannot load ({err})") from err
    if kind_of(models[0]) is not None:
        raise BenchmarkError(f"--verifier {args.verifier!r} holds a Spec-Drafter; give the verifier (a transformer)")
    device = torch.device(args.device)
    model = models[0].to(device)
    if args.fp16:
        model = model.half()
    model.eval()
    drafter = None
    if any(m in NEEDS_DRAFTER for m in args.modes):
        try:
            drafter = load_drafter(args.drafter, task, verifier=model)
        except ValueError as err:  # DrafterCheckpointError names the task's flag
            raise BenchmarkError(str(err).replace("--drafter-path", "--drafter")) from err
        drafter = place_like(drafter, model)
    # --block-size, else the drafter's k, else the n-gram drafter's (the report records the k used)
    args.block_size = (decoding_block_size(args.block_size, trained_block_size(drafter)) if drafter is not None
                       else ngram_block_size(args.block_size))
    try:
        if drafter is not None:
            check_drafter_block_size(drafter, args.block_size)
        ngram_index = load_ngram_index(args, task, src, tgt)
        shortlist = None
        if args.draft_vocab:
            require_draft_vocab(drafter)  # loaded only for the modes that draft with it
            shortlist = load_shortlist(args.data, src, tgt, task.target_dictionary, args.draft_vocab)
    except ValueError as err:
        raise BenchmarkError(str(err)) from err
    return task, model, drafter, ngram_index, shortlist


def make_batches(task, model, dataset, batch_size: int, device) -> List[dict]:
    """All batches of the subset in fairseq's order (by length), moved to ``device``."""
    with warnings.catch_warnings():  # fairseq's loader asks for pin_memory, pointless on CPU
        warnings.filterwarnings("ignore", message=".*pin_memory.*")
        itr = task.get_batch_iterator(
            dataset=dataset, max_sentences=batch_size,
            max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
            disable_iterator_cache=True,  # the cache would hand back the first batch size's batches
        ).next_epoch_itr(shuffle=False)
        batches = list(itr)
    if device.type == "cuda":
        batches = [utils.move_to_cuda(b, device=device) for b in batches]
    return batches


def timed_pass(decoder, inputs, device, counted: bool = True):
    """Seconds of one pass over all batches (CUDA synchronized on both ends), and its raw
    output; ``counted=False``: a warm-up, not added to the decoder's statistics."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run = decoder.run if counted else getattr(decoder, "uncounted", decoder.run)  # CTranslate2: nothing to count
    with torch.no_grad():
        raw = run(inputs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, raw


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def benchmark_batch_size(args, bs, modes, setup, dataset, ct2) -> Dict[str, dict]:
    """Warm-up, then ``repeats`` interleaved timed passes of every mode at one batch size."""
    task, model, drafter, ngram_index, shortlist = setup
    device, tgt_dict = next(model.parameters()).device, task.target_dictionary
    batches = make_batches(task, model, dataset, bs, device)
    # timing the parts synchronizes CUDA every iteration: only when the profile is asked for
    stats = {m: DecodingStats(profile=args.profile) for m in modes if m in SPECDEC_MODES}
    known = None
    if any(m in ORACLE_MODES for m in modes):  # what the oracle drafts: greedy's outputs at this batch size
        greedy = make_decoder("greedy", args, model, drafter, tgt_dict, None)
        known = known_outputs(timed_pass(greedy, batches, device)[1], batches, tgt_dict.pad())
    # the decoders that are timed are the ones warmed up (with --cuda-graphs: their graphs are recorded then)
    measured = {m: make_decoder(m, args, model, drafter, tgt_dict, stats.get(m), ct2, known, ngram_index, shortlist)
                for m in modes}
    inputs = {m: measured[m].prepare(batches) for m in modes}
    limits = length_limits(batches, args.max_len_a, args.max_len_b, model.max_decoder_positions())
    times = {m: [] for m in modes}
    peaks = {m: 0.0 for m in modes}
    last_raw = {}
    in_process = [m for m in modes if m not in CT2_MODES]
    for _ in range(args.warmup):
        for m in in_process:
            timed_pass(measured[m], inputs[m], device, counted=False)
    for rep in range(args.repeats):
        for m in in_process:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds, last_raw[m] = timed_pass(measured[m], inputs[m], device)
            times[m].append(seconds)
            peaks[m] = max(peaks[m], peak_memory_mb(device))
            logger.info("batch %d repeat %d %s: %.3fs", bs, rep + 1, m, seconds)
    ct2_modes = [m for m in modes if m in CT2_MODES]
    if ct2_modes:  # after torch's modes, in a process where torch never ran
        timed = peer.time_in_own_process(ct2, {m: measured[m] for m in ct2_modes},
                                         {m: inputs[m] for m in ct2_modes}, args.warmup, args.repeats)
        for m in ct2_modes:
            times[m], last_raw[m], peaks[m] = timed[m]["times"], timed[m]["hypotheses"], timed[m]["peak_mb"]
            logger.info("batch %d %s (own process, pid %d): %s", bs, m, ct2.facts["pid"],
                        ", ".join(f"{t:.3f}s" for t in times[m]))
    results = {}
    for m in modes:
        tokens = measured[m].tokens(last_raw[m], batches)
        results[m] = {"times": times[m], "median_s": statistics.median(times[m]), "tokens": tokens,
                      "at_length_limit": count_at_limit(tokens, limits), "peak_mb": peaks[m], "stats": stats.get(m)}
        if device.type == "cuda" and m in CT2_MODES:
            results[m]["peak_mb"] = None  # CTranslate2 allocates outside torch's allocator
    return results


def ct2_facts(ct2, modes) -> Optional[dict]:
    """What the report records of the CTranslate2 peer: version, compute types, threads, process."""
    if ct2 is None:
        return None
    return {"version": ct2.version, "threads": ct2.threads, "device": ct2.device,
            "compute_types": {m: ct2.compute_type(m) for m in modes if m in CT2_MODES},
            "supported_compute_types": ct2.supported, **ct2.facts}


def _use_ct2(args) -> bool:
    if args.ctranslate2 == "off" or not any(m.startswith("ct2_") for m in args.modes):
        return False
    if peer.available():
        return True
    if args.ctranslate2 == "on":
        raise BenchmarkError("--ctranslate2 on: ctranslate2 is not importable (pip install ctranslate2)")
    logger.warning("ctranslate2 is not importable: the ct2 modes are left out")
    return False


def _open_ct2(args, src, tgt, task):
    """The converted verifier, or None (with a warning) when conversion fails under --ctranslate2 auto."""
    try:
        return peer.CT2Model(args.verifier, args.data, src, tgt, task.source_dictionary,
                                  task.target_dictionary, device=args.device, fp16=args.fp16,
                                  threads=torch.get_num_threads(), out_dir=args.out_dir)
    except Exception as err:
        if args.ctranslate2 == "on":
            raise BenchmarkError(f"--ctranslate2 on: {err}") from err
        logger.warning("the ct2 modes are left out: %s", err)
        return None


def _setup_logging(quiet: bool) -> None:
    # force: importing fairseq configures the root logger (at DEBUG level, from wav2vec2_classification)
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", stream=sys.stderr,
                        level=logging.WARNING if quiet else logging.INFO, force=True)


def main(argv: Optional[List[str]] = None, configure_logging: bool = False) -> dict:
    """Run the benchmark; print the table; write the outputs; return the report dict.

    Called in-process (tests, notebooks) it leaves logging alone unless asked, and puts
    torch's thread count back as it found it.
    """
    args = build_parser().parse_args(argv)
    if args.bounds:
        args.modes = [m for m in MODES if m in args.modes or m in ORACLE_MODES]
    if configure_logging:
        _setup_logging(args.quiet)
    _check_args(args)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args, argv)
    finally:
        torch.set_num_threads(threads)


def _run(args, argv) -> dict:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > (os.cpu_count() or 1) - 0.5:
        logger.warning("load average %.1f on %d CPUs: other processes compete for the cores, timings will be "
                       "noisy (try --threads 1)", load, os.cpu_count())
    with_ct2 = _use_ct2(args)
    modes = [m for m in args.modes if with_ct2 or not m.startswith("ct2_")]
    if not modes:
        raise BenchmarkError("no mode left to run (the ct2 modes need ctranslate2)")
    src, tgt = _languages(args)
    setup = load_setup(args, src, tgt)
    task = setup[0]
    dataset = task.dataset(args.subset)
    if args.max_sentences:
        dataset = FirstN(dataset, args.max_sentences)
    ct2 = _open_ct2(args, src, tgt, task) if with_ct2 else None
    unsupported = [m for m in modes if m in CT2_MODES and ct2 is not None and not ct2.runs(m)]
    if unsupported:
        logger.warning("left out: %s (CTranslate2 on %s supports the compute types %s)", ", ".join(unsupported),
                       ct2.device, ", ".join(ct2.supported))
    modes = [m for m in modes if m not in CT2_MODES or (ct2 is not None and m not in unsupported)]
    try:
        per_bs = {bs: benchmark_batch_size(args, bs, modes, setup, dataset, ct2) for bs in args.batch_sizes}
    finally:
        if ct2 is not None:
            ct2.close()
    command = sys.argv if argv is None else ["specdec-benchmark", *argv]
    report = reporting.build_report(args, modes, per_bs, dataset, task, src, tgt, command,
                                       ct2=ct2_facts(ct2, modes))
    text = reporting.markdown_table(report)
    if args.profile:
        text += "\n\n" + reporting.profile_table(report)
    print(text)
    if args.out_dir:
        report["files"] = reporting.write_outputs(report, args.out_dir, text, plots=not args.no_plots)
    return report


def cli_main():
    try:
        main(configure_logging=True)
    except (BenchmarkError, ValueError) as err:  # the plugin's checks of bad input raise ValueError
        sys.exit(f"specdec-benchmark: error: {err}")


if __name__ == "__main__":
    cli_main()
