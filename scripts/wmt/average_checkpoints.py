#!/usr/bin/env python3
"""Average the parameters of the last N fairseq checkpoints of a training run.

A thin stand-in for fairseq's scripts/average_checkpoints.py, which the pip package does
not ship. Like it, the checkpoints are read with torch.load, as fairseq wrote them (no
format upgrade, so the output is in the same format), after importing fairseq_specdec,
which allow-lists the classes fairseq checkpoints hold so that torch >= 2.6
(weights_only loading) can read them.

The output keeps everything of the newest checkpoint (cfg, args, extra_state) except that
"model" holds the average, and the optimizer state is dropped (it belongs to one of the
inputs, not to the average, and it triples the file size). fairseq-generate,
--init-from-verifier and --drafter-path load the result like any checkpoint.

usage: average_checkpoints.py --inputs SAVE_DIR --output averaged.pt
                              [--num-update-checkpoints N | --num-epoch-checkpoints N]
                              [--checkpoint-upper-bound K]
       average_checkpoints.py --inputs a.pt b.pt ... --output averaged.pt
"""
import argparse
import collections
import os
import re
import sys

import torch

try:
    import fairseq_specdec  # noqa: F401  (allow-lists the checkpoint classes for torch >= 2.6)
except ImportError:  # not installed: use the checkout this script belongs to
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir))
    import fairseq_specdec  # noqa: F401
from fairseq.file_io import PathManager


def last_checkpoints(folder, n, kind, upper_bound=None):
    """The paths of the last ``n`` epoch (checkpoint<E>.pt) or update (checkpoint_<E>_<U>.pt)
    checkpoints in ``folder``, newest first."""
    pattern = re.compile(r"checkpoint_\d+_(\d+)\.pt$" if kind == "update" else r"checkpoint(\d+)\.pt$")
    found = []
    for name in os.listdir(folder):
        m = pattern.fullmatch(name)
        if m and (upper_bound is None or int(m.group(1)) <= upper_bound):
            found.append((int(m.group(1)), os.path.join(folder, name)))
    found.sort(reverse=True)
    if not found:
        raise SystemExit(f"error: no {kind} checkpoints ({pattern.pattern}) in {folder}")
    if len(found) < n:
        print(f"warning: {len(found)} {kind} checkpoints in {folder}, fewer than the {n} asked for; "
              f"averaging them all", file=sys.stderr)
    return [path for _, path in found[:n]]


def average(paths):
    """(state of the newest checkpoint, averaged model parameters)."""
    summed, newest = collections.OrderedDict(), None
    for i, path in enumerate(paths):
        with PathManager.open(path, "rb") as f:
            state = torch.load(f, map_location="cpu")
        if newest is None:
            newest = state
        params = state["model"]
        if summed and set(params) != set(summed):
            raise SystemExit(f"error: {path} has different parameters from {paths[0]}")
        for name, tensor in params.items():
            value = tensor.float() if tensor.is_floating_point() else tensor
            if name not in summed:
                summed[name] = value.clone()
            elif value.is_floating_point():
                summed[name] += value
        if i:  # the first state is kept whole; free the others as we go
            del state
    averaged = collections.OrderedDict()
    for name, total in summed.items():
        dtype = newest["model"][name].dtype
        averaged[name] = (total / len(paths)).to(dtype) if total.is_floating_point() else total
    return newest, averaged


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", nargs="+", required=True,
                        help="checkpoint files, or one folder together with --num-*-checkpoints")
    parser.add_argument("--output", required=True)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--num-update-checkpoints", type=int, help="average the last N checkpoint_E_U.pt")
    group.add_argument("--num-epoch-checkpoints", type=int, help="average the last N checkpointE.pt")
    parser.add_argument("--checkpoint-upper-bound", type=int,
                        help="ignore checkpoints after this epoch (or update) number")
    args = parser.parse_args(argv)

    if args.num_update_checkpoints or args.num_epoch_checkpoints:
        if len(args.inputs) != 1 or not os.path.isdir(args.inputs[0]):
            parser.error("--num-*-checkpoints takes one folder as --inputs")
        kind = "update" if args.num_update_checkpoints else "epoch"
        paths = last_checkpoints(args.inputs[0], args.num_update_checkpoints or args.num_epoch_checkpoints,
                                 kind, args.checkpoint_upper_bound)
    else:
        paths = args.inputs
    print(f"averaging {len(paths)} checkpoints: {', '.join(map(os.path.basename, paths))}", file=sys.stderr)
    state, averaged = average(paths)
    state["model"] = averaged
    state["last_optimizer_state"] = None
    state.setdefault("extra_state", {})
    if isinstance(state["extra_state"], dict):
        state["extra_state"]["averaged_from"] = [os.path.abspath(p) for p in paths]
    tmp = f"{args.output}.tmp{os.getpid()}"
    with PathManager.open(tmp, "wb") as f:
        torch.save(state, f)
    os.replace(tmp, args.output)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
