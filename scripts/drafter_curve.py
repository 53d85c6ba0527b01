#!/usr/bin/env python3
"""Tokens committed per iteration (SpecDec, beta=1) against training time, one row per
saved drafter checkpoint: the drafter's learning curve as acceptance measures it.

    python scripts/drafter_curve.py --data BIN --verifier V.pt --block-size 10 \
        --max-sentences 150 DRAFTER_DIR/checkpoint_*_*.pt DRAFTER_DIR/checkpoint_last.pt

Each checkpoint goes through the benchmark (``fairseq_specdec.benchmark``, mode
specdec_fixed: exactly k drafts per iteration, so that the figure is the drafter's, not
adaptive drafting's; one pass, no warm-up); the training time is fairseq's own record in the
checkpoint (``previous_training_time``).
"""
import argparse
import json
import sys

import torch

from fairseq_specdec.benchmark import cli as benchmark


def training_record(path: str):
    """(updates, training seconds) as fairseq-train saved them."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    history = state.get("optimizer_history") or [{}]
    return history[-1].get("num_updates"), (state.get("extra_state") or {}).get("previous_training_time")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--verifier", required=True)
    p.add_argument("--block-size", type=int, required=True)
    p.add_argument("--max-sentences", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=32, help="acceptance does not depend on it (beta=1)")
    p.add_argument("--json", help="also write the rows here")
    p.add_argument("checkpoints", nargs="+")
    args = p.parse_args(argv)
    rows = []
    print("| checkpoint | updates | training min | tok/iter |\n|---|---|---|---|")
    for path in args.checkpoints:
        report = benchmark.main([
            "--data", args.data, "--verifier", args.verifier, "--drafter", path, "--block-size", str(args.block_size),
            "--modes", "specdec_fixed", "--batch-sizes", str(args.batch_size), "--repeats", "1", "--warmup", "0",
            "--max-sentences", str(args.max_sentences), "--ctranslate2", "off", "--quiet"])
        row = next(r for r in report["rows"] if r["mode"] == "specdec_fixed")
        updates, seconds = training_record(path)
        rows.append({"checkpoint": path, "updates": updates, "training_s": seconds, "tok_per_iter": row["tok_per_iter"]})
        minutes = f"{seconds / 60:.1f}" if seconds is not None else "?"
        print(f"| {path} | {updates} | {minutes} | {row['tok_per_iter']:.2f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
