#!/usr/bin/env python3
"""SpecDec (beta=1) with the chain drafter drafting over shortlists of several sizes
(--draft-vocab), against fairseq's greedy, every variant interleaved in one process.

    python scripts/draft_vocab_sweep.py --data BIN --verifier V.pt --drafter CHAIN.pt \
        --sizes 0,1598,1024,512 --batch-sizes 1,8,32 --max-sentences 150 --repeats 3

Size 0 is the whole vocabulary. Each batch size: one warm-up pass of every variant, then
``--repeats`` rounds of one timed pass each; the table gives the median, the ratio to
greedy's median and the tokens committed per iteration, and checks the output is greedy's.
"""
import argparse
import statistics
import sys

import torch

from fairseq_specdec.benchmark import cli as benchmark
from fairseq_specdec.benchmark.modes import make_decoder
from fairseq_specdec.drafting.draft_vocab import load_shortlist
from fairseq_specdec.decoding.stats import DecodingStats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--verifier", required=True)
    p.add_argument("--drafter", required=True, help="a chain drafter checkpoint")
    p.add_argument("--sizes", default="0,1024,512", help="shortlist sizes; 0 = the whole vocabulary")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--max-sentences", type=int, default=150)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    bench = benchmark.build_parser().parse_args([
        "--data", args.data, "--verifier", args.verifier, "--drafter", args.drafter, "--modes", "greedy,specdec",
        "--max-sentences", str(args.max_sentences), "--device", args.device, "--ctranslate2", "off"])
    src, tgt = benchmark._languages(bench)
    task, model, drafter, _ngram, _shortlist = benchmark.load_setup(bench, src, tgt)
    tgt_dict, device = task.target_dictionary, next(model.parameters()).device
    sizes = [int(s) for s in args.sizes.split(",")]
    shortlists = {n: load_shortlist(args.data, src, tgt, tgt_dict, n) if n else None for n in sizes}
    dataset = benchmark.FirstN(task.dataset(bench.subset), args.max_sentences)
    print("| batch | draft vocab | median s | x greedy | tok/iter | identical |\n|---|---|---|---|---|---|")
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        batches = benchmark.make_batches(task, model, dataset, bs, device)
        stats = {n: DecodingStats() for n in sizes}
        decoders = {"greedy": make_decoder("greedy", bench, model, drafter, tgt_dict, None)}
        decoders.update({n: make_decoder("specdec", bench, model, drafter, tgt_dict, stats[n], shortlist=shortlists[n])
                         for n in sizes})
        for decoder in decoders.values():
            benchmark.timed_pass(decoder, batches, device, counted=False)
        times, outputs = {name: [] for name in decoders}, {}
        for _ in range(args.repeats):
            for name, decoder in decoders.items():
                seconds, raw = benchmark.timed_pass(decoder, batches, device)
                times[name].append(seconds)
                outputs[name] = decoder.tokens(raw, batches)
        greedy = statistics.median(times["greedy"])
        for n in sizes:
            median, s = statistics.median(times[n]), stats[n]
            label = n if n else f"all ({len(tgt_dict)})"
            print(f"| {bs} | {label} | {median:.2f} | {greedy / median:.2f} | "
                  f"{s.committed_tokens / s.iterations:.2f} | {outputs[n] == outputs['greedy']} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
