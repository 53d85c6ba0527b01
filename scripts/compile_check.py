#!/usr/bin/env python3
"""Does ``torch.compile`` pay for the lean decoding step on this machine? Lean greedy and
lossless SpecDec (chain drafter) decoded eagerly and with the verifier's block forward and
the chain drafter's per-step forwards compiled (inductor), timed interleaved in one
process, with the compile time, the graphs dynamo captured and the outputs' identity.

    python scripts/compile_check.py --data work/gettext/prep/bin -s en -t fr \
        --verifier work/gettext/verifier/averaged.pt --drafter work/gettext/drafter/checkpoint_last.pt

Measured on the 2-core CPU of the README's figures (2026-12-02) compiling did not pay, so
the plugin has no --compile option: the script is here to measure it again (say on a GPU,
with --device cuda) before one is added.
"""
import argparse
import time

import torch
from fairseq import checkpoint_utils

import fairseq_specdec  # noqa: F401  (registers the plugin's task and models)
from fairseq_specdec.benchmark.cli import DEFAULT_MAX_LEN_A, DEFAULT_MAX_LEN_B
from fairseq_specdec.benchmark.test_task import load_test_task
from fairseq_specdec.drafting.loading import load_drafter, place_like
from fairseq_specdec.drafting.kinds import make_proposer
from fairseq_specdec.decoding.generators import Decoding, build_generator


def batches(dataset, count: int, batch_size: int, device):
    ids = list(range(min(count, len(dataset))))
    out = []
    for start in range(0, len(ids), batch_size):
        sample = dataset.collater([dataset[i] for i in ids[start:start + batch_size]])
        out.append({"id": sample["id"], "net_input": {k: v.to(device) for k, v in sample["net_input"].items()
                                                       if k in ("src_tokens", "src_lengths")}})
    return out


def compiled(generator, counter):
    """``generator`` with its verifier's block forward (and its chain drafter's steps) compiled."""
    def comp(fn):
        return torch.compile(fn, dynamic=True, backend=counter)
    generator.verifier.forward = comp(generator.verifier.forward)
    drafter = getattr(generator, "drafter", None)
    if drafter is not None and hasattr(drafter, "_states"):
        drafter._states = comp(drafter._states)
        drafter.next_token = comp(drafter.next_token)
    return generator


class CountingInductor:
    """inductor, counting the graphs dynamo hands it (graph breaks show as more graphs)."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        from torch._inductor.compile_fx import compile_fx
        self.graphs += 1
        return compile_fx(gm, example_inputs)


def decode(generator, model, samples):
    began, out = time.perf_counter(), []
    with torch.no_grad():
        for sample in samples:
            out += [h[0]["tokens"].tolist() for h in generator.generate([model], sample)]
    return time.perf_counter() - began, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--verifier", required=True)
    p.add_argument("--drafter", help="chain drafter checkpoint (adds the SpecDec rows)")
    p.add_argument("--source-lang", "-s", default="en")
    p.add_argument("--target-lang", "-t", default="de")
    p.add_argument("--block-size", type=int, default=6, help="SpecDec: at most k drafts per iteration")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-sizes", default="1,8")
    p.add_argument("--max-sentences", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = load_test_task(args.data, args.source_lang, args.target_lang)
    device = torch.device(args.device)
    model = checkpoint_utils.load_model_ensemble([args.verifier], task=task)[0][0].to(device).eval()
    drafter = place_like(load_drafter(args.drafter, task), model) if args.drafter else None
    tgt = task.target_dictionary
    search = dict(max_len_a=DEFAULT_MAX_LEN_A, max_len_b=DEFAULT_MAX_LEN_B)

    def generators(counter=None):
        built = {"greedy_lean": build_generator([model], tgt, Decoding(lean_greedy=True), search)}
        if drafter is not None:
            built["specdec"] = build_generator([model], tgt, Decoding(
                proposer=make_proposer(drafter, tgt, model), block_size=args.block_size, adaptive=True), search)
        return built if counter is None else {m: compiled(g, counter) for m, g in built.items()}

    for bsz in map(int, args.batch_sizes.split(",")):
        samples = batches(task.dataset("test"), args.max_sentences, bsz, device)
        counter = CountingInductor()
        eager, comp = generators(), generators(counter)
        began = time.perf_counter()
        for g in comp.values():
            decode(g, model, samples)  # compiles (warm-up)
        compile_s = time.perf_counter() - began
        for g in eager.values():
            decode(g, model, samples)
        seconds = {(m, kind): 0.0 for m in eager for kind in ("eager", "compiled")}
        outputs = {}
        for _ in range(args.repeats):
            for m in eager:
                for kind, g in (("eager", eager[m]), ("compiled", comp[m])):
                    t, outputs[m, kind] = decode(g, model, samples)
                    seconds[m, kind] += t
        for m in eager:
            same = sum(a == b for a, b in zip(outputs[m, "eager"], outputs[m, "compiled"]))
            e, c = seconds[m, "eager"] / args.repeats, seconds[m, "compiled"] / args.repeats
            print(f"batch {bsz} {m}: eager {e:.3f} s, compiled {c:.3f} s, compiled x eager {e / c:.2f}; "
                  f"identical {same}/{len(outputs[m, 'eager'])}")
        print(f"batch {bsz}: warm-up with compilation {compile_s:.1f} s, {counter.graphs} graphs compiled")


if __name__ == "__main__":
    main()
