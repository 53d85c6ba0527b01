#!/usr/bin/env python3
"""Lean greedy and SpecDec against fairseq's greedy in one precision (fp32, bf16, fp16):
how many sentences come out identical, and the largest top-2 gap of the verifier at a
divergence (the rule and tolerances: fairseq_specdec/verification/precision_rule.py).

    python scripts/precision_check.py --data work/demo/prep/bin --verifier work/demo/verifier/averaged.pt \
        --drafter work/demo/drafter/checkpoint_last.pt --dtype bf16 --max-sentences 200

The first --max-sentences test sentences, in batches of --batch-size (fairseq's length
limits 1.2 x source + 10, as the demo decodes). SpecDec drafts adaptively (the default of
fairseq-generate) with the trained drafter, and with an oracle that drafts fairseq's output.
"""
import argparse
import sys
import time

import torch
from fairseq import checkpoint_utils

import fairseq_specdec  # noqa: F401  (registers the plugin's task and models)
from fairseq_specdec.benchmark.cli import DEFAULT_MAX_LEN_A, DEFAULT_MAX_LEN_B
from fairseq_specdec.benchmark.test_task import load_test_task
from fairseq_specdec.drafting.loading import load_drafter, place_like
from fairseq_specdec.drafting.kinds import make_proposer
from fairseq_specdec.benchmark.oracle import OracleDrafter, source_key
from fairseq_specdec.decoding.generators import Decoding, build_generator
from fairseq_specdec.verification.precision_rule import TOLERANCE, compare, decode_all

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def batches_of(dataset, count: int, batch_size: int, device):
    """The first ``count`` sentences, by length, in batches of ``batch_size``."""
    ids = sorted(range(min(count, len(dataset))), key=lambda i: dataset.src_sizes[i])
    for start in range(0, len(ids), batch_size):
        sample = dataset.collater([dataset[i] for i in ids[start:start + batch_size]])
        yield {"id": sample["id"], "net_input": {k: v.to(device) for k, v in sample["net_input"].items()
                                                  if k in ("src_tokens", "src_lengths")}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--verifier", required=True)
    p.add_argument("--drafter", required=True)
    p.add_argument("--source-lang", default="en")
    p.add_argument("--target-lang", default="de")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-sentences", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = load_test_task(args.data, args.source_lang, args.target_lang)
    dtype, device = DTYPES[args.dtype], torch.device(args.device)
    model = checkpoint_utils.load_model_ensemble([args.verifier], task=task)[0][0].to(device=device, dtype=dtype).eval()
    drafter = place_like(load_drafter(args.drafter, task), model)
    tgt_dict, k = task.target_dictionary, task.block_size
    search = dict(max_len_a=DEFAULT_MAX_LEN_A, max_len_b=DEFAULT_MAX_LEN_B)
    batches = list(batches_of(task.dataset("test"), args.max_sentences, args.batch_size, device))
    began = time.perf_counter()
    reference, sources = decode_all(build_generator([model], tgt_dict, Decoding(), search), model, batches)
    known = {source_key(src, tgt_dict.pad()): reference[sid] for sid, src in sources.items()}
    modes = {
        "lean greedy": Decoding(lean_greedy=True),
        "SpecDec, trained drafter": Decoding(proposer=make_proposer(drafter, tgt_dict, model), block_size=k,
                                             adaptive=True),
        "SpecDec, oracle drafter": Decoding(proposer=OracleDrafter(known, tgt_dict.pad(), tgt_dict.eos()),
                                            block_size=k),
    }
    tolerance = TOLERANCE[dtype]
    print(f"{args.dtype} on {args.device}, {len(reference)} sentences, k = {k}, tolerance {tolerance} nats")
    for name, decoding in modes.items():
        ours, _ = decode_all(build_generator([model], tgt_dict, decoding, search), model, batches)
        tally = compare(model, sources, reference, ours, tgt_dict.pad(), tgt_dict.eos(), tolerance)
        print(f"{name}: {tally.summary()}", flush=True)
    print(f"{time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
