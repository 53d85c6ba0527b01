"""Measure speculative beam search's potential at batch 1 before implementing it (issue
23, item 1): fairseq's own beam search runs and its kept hypotheses are recorded at every
step; the chain drafter then grows a tree (width W, depth k) from the hypotheses of every
step, and ``beam_replay`` counts the beam steps one verifier forward over that tree could
replay exactly (definitions there). Costs are timed in this process, interleaved
(``beam_costs``); the projected speedup over fairseq's beam search is

    s x step / (drafter + verifier + s x search)

with s the mean beam steps per iteration, step one fairseq beam step (its decode of a
sentence, less the encoder, per step), drafter the tree's drafting, verifier the lean
block forward of the tree's positions, and search the part of fairseq's step outside the
decoder forward and the cache reorder (topk, finalization, bookkeeping), which the replay
still runs once per step. ``x_beam5_drafting_free`` drops the drafter; ``x_lean_beam5``
compares with a beam step whose forward is the lean verifier's (what a lean beam search
without drafting would take); the ``oracle`` rows draft every kept set (s = k + 1 but for
the search's end) for free: the scheme's bound whatever the drafter.

    python -m fairseq_specdec.benchmark.beam_potential --data work/demo/prep/bin \\
        --verifier work/demo/verifier/averaged.pt --drafter work/demo/drafter/checkpoint_last.pt \\
        --max-sentences 200 --out-dir work/demo/beam_potential
"""
import argparse
import json
import os
import time
from argparse import Namespace
from typing import Callable, Dict, List

import torch
from fairseq import checkpoint_utils, tasks
from fairseq.sequence_generator import SequenceGenerator

import fairseq_specdec  # noqa: F401  (registers the task; allow-lists checkpoint classes)
from fairseq_specdec.benchmark import beam_replay as replay
from fairseq_specdec.benchmark.beam_costs import (
    ChainTreeDrafter, Timed, VerifierTreeDrafter, drafter_iteration, interleaved_ms, verifier_iteration)
from fairseq_specdec.benchmark.cli import DEFAULT_MAX_LEN_A, DEFAULT_MAX_LEN_B, FirstN, make_batches
from fairseq_specdec.drafting.loading import load_drafter, place_like
from fairseq_specdec.drafting.chain import ChainDrafter
from fairseq_specdec.drafting.kinds import make_proposer

BEAM = 5


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="beam_potential", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="fairseq binarized data directory")
    p.add_argument("--verifier", required=True, help="stock fairseq transformer checkpoint")
    p.add_argument("--drafter", required=True, help="chain drafter checkpoint (specdec_drafter_chain*)")
    p.add_argument("--subset", default="test")
    p.add_argument("--max-sentences", type=int, default=200, help="the first N sentences of the subset")
    p.add_argument("--widths", default="5,10", help="tree widths W, comma-separated")
    p.add_argument("--depths", default="2,3,4,5,6,7,8", help="tree depths k, comma-separated")
    p.add_argument("--max-len-a", type=float, default=DEFAULT_MAX_LEN_A)
    p.add_argument("--max-len-b", type=int, default=DEFAULT_MAX_LEN_B)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--repeats", type=int, default=30, help="timed rounds of the costs (the fastest is kept)")
    p.add_argument("--check-sentences", type=int, default=5,
                   help="check the replay on N sentences with the verifier as its own drafter (0: skip)")
    p.add_argument("--reach-from", help="a previous run's beam_potential.json: reuse its simulation, time anew")
    p.add_argument("--out-dir", help="write beam_potential.json and table.md here")
    return p


def load(args):
    """The task, the verifier and the chain drafter's proposer next to it."""
    task = tasks.setup_task(Namespace(task="specdec_translation", data=args.data, source_lang=None,
                                      target_lang=None, seed=1, dataset_impl=None, train_subset="train",
                                      required_seq_len_multiple=1))
    task.load_dataset(args.subset)
    models, _ = checkpoint_utils.load_model_ensemble([args.verifier], task=task)
    model = models[0].eval()
    drafter = place_like(load_drafter(args.drafter, task, verifier=model), model)
    proposer = make_proposer(drafter, task.target_dictionary, model)
    if not isinstance(proposer, ChainDrafter):
        raise ValueError(f"--drafter {args.drafter} is a {type(drafter).__name__}: the tree needs a chain drafter")
    return task, model, proposer


@torch.no_grad()
def run_fairseq(model, tgt_dict, batches, args) -> Dict:
    """fairseq's beam 5 over the sentences: the faster of two timed passes (stock
    BeamSearch), then a recorded pass (``RecordingBeamSearch``) that must decode the same."""
    plain = SequenceGenerator([model], tgt_dict, **search_options(args))
    for sample in batches[:5]:
        plain.generate([model], sample)
    total = float("inf")
    for _ in range(2):  # the cores are shared
        start = time.perf_counter()
        outputs = [plain.generate([model], sample)[0][0]["tokens"].tolist() for sample in batches]
        total = min(total, time.perf_counter() - start)
    recorder = replay.RecordingBeamSearch(tgt_dict)
    recorded = SequenceGenerator([model], tgt_dict, search_strategy=recorder, **search_options(args))
    steps = []
    for sample, expected in zip(batches, outputs):
        got = recorded.generate([model], sample)[0][0]["tokens"].tolist()
        assert got == expected, "the recorded search must decode as the stock one"
        steps.append(recorder.take())
    n_steps = sum(len(s) for s in steps)
    return {"steps": steps, "sentences": len(batches), "beam_steps": n_steps,
            "ms_per_sentence": 1000 * total / len(batches)}


def search_options(args) -> Dict:
    """fairseq-generate's defaults (lenpen 1, normalized scores) at beam 5, with the project's length limits."""
    return dict(beam_size=BEAM, max_len_a=args.max_len_a, max_len_b=args.max_len_b)


@torch.no_grad()
def simulate(make_tree: Callable[[Dict], replay.TreeDrafter], batches, steps, width: int, depth: int,
             eos: int) -> List[List[int]]:
    """Per sentence, per step t: the reach of the width-W, depth-k tree grown at t by the
    drafter ``make_tree(net_input)`` returns for the sentence."""
    reaches = []
    for sample, sentence in zip(batches, steps):
        tree = make_tree(sample["net_input"])
        kept = replay.kept_sets(sentence)
        reach = []
        for t, step in enumerate(sentence):
            roots, scores = step.roots()
            levels = replay.build_tree(tree, roots, scores, width, depth, banned=[eos])
            reach.append(replay.tree_reach(kept, t, levels))
        reaches.append(reach)
    return reaches


def check_replay(model, batches, steps, depth: int, eos: int) -> Dict:
    """With the verifier as its own drafter a width-N tree holds every kept set: the share of
    steps whose tree reaches as far as it can (depth k, or the search's end) should be 1."""
    reaches = simulate(lambda net_input: VerifierTreeDrafter(model, net_input, eos), batches, steps, BEAM, depth, eos)
    full = [r == min(depth, len(sentence) - 1 - t)
            for reach, sentence in zip(reaches, steps) for t, r in enumerate(reach)]
    return {"sentences": len(batches), "steps": len(full), "full_reach_share": sum(full) / len(full)}


def load_reaches(path: str, widths: List[int], steps) -> Dict[int, List[List[int]]]:
    """A previous run's reach per W (its beam_potential.json), checked against this run's steps."""
    with open(path) as f:
        saved = json.load(f)
    if saved["kept"] != [[list(map(list, s.hypotheses)) for s in sentence] for sentence in steps]:
        raise ValueError(f"--reach-from {path}: its beam search kept other hypotheses than this run's")
    return {w: saved["reach"][str(w)] for w in widths if str(w) in saved["reach"]}


def reach_shares(reaches: List[List[int]], depth: int) -> List[float]:
    """For d = 1..depth: the share of the steps (with d steps left) whose tree reaches d."""
    shares = []
    for d in range(1, depth + 1):
        room = [r for reach in reaches for t, r in enumerate(reach) if len(reach) - 1 - t >= d]
        shares.append(sum(r >= d for r in room) / max(1, len(room)))
    return shares


def steps_per_iteration(reaches: List[List[int]], depth: int) -> float:
    iterations = [replay.iteration_steps(r, depth) for r in reaches]
    return sum(map(sum, iterations)) / sum(map(len, iterations))


def timing_roots(steps, prefix: int):
    """The sentence the costs are timed on (of those with N distinct hypotheses at step
    ``prefix``, the one whose step count is nearest 2 x prefix + 1) and those hypotheses."""
    fit = [i for i, s in enumerate(steps) if len(s) > prefix and len(s[prefix].roots()[0]) == BEAM]
    if not fit:
        raise ValueError(f"no sentence reaches step {prefix} with {BEAM} distinct hypotheses")
    which = min(fit, key=lambda i: abs(len(steps[i]) - (2 * prefix + 1)))
    return which, list(steps[which][prefix].hypotheses)


def cost_rows(args, model, tgt_dict, proposer, batches, run: Dict, reaches: Dict[int, List[List[int]]],
              eos: int) -> List[Dict]:
    """One row per (W, k), then the oracle tree's (every kept set drafted, drafting free).
    All costs, fairseq's beam 5 on one sentence included, are timed interleaved."""
    steps = run["steps"]
    prefix = round(sum(len(s) * (len(s) - 1) / 2 for s in steps) / run["beam_steps"])  # the mean step index
    which, roots = timing_roots(steps, prefix)
    sample = batches[which]
    tree = ChainTreeDrafter(proposer, model, sample["net_input"])
    split = SequenceGenerator([model], tgt_dict, **search_options(args))
    parts = {name: Timed(split.model, name) for name in
             ("forward_encoder", "forward_decoder", "reorder_incremental_state", "reorder_encoder_out")}
    whole = Timed(split, "generate")
    costs = {"beam5": lambda: split.generate([model], sample),
             "encoder": lambda: model.encoder.forward_torchscript(sample["net_input"])}  # fairseq's encoder call
    oracle = [[len(s) - 1 - t for t in range(len(s))] for s in steps]  # every kept set in the tree
    configs = []
    for width in [*sorted(reaches), None]:
        for depth in args.depth_list:
            per_iter = steps_per_iteration(reaches[width] if width else oracle, depth)
            block = 1 + -(-(width or BEAM) * depth // BEAM)  # the root's last token and its share of the nodes
            configs.append((width, depth, per_iter, block))
            costs.setdefault(f"verifier{block}", verifier_iteration(model, sample["net_input"], roots, block))
            if width:
                costs[f"drafter{width}x{depth}"] = drafter_iteration(tree, roots, width, depth,
                                                                     max(1, round(per_iter)), [eos])
    costs.setdefault("verifier1", verifier_iteration(model, sample["net_input"], roots, 1))
    ms = interleaved_ms(costs, args.repeats)
    step = (ms["beam5"] - ms["encoder"]) / len(steps[which])
    decoding = whole.seconds - parts["forward_encoder"].seconds  # all the rounds' steps
    shares = {name: parts[name].seconds / decoding
              for name in ("forward_decoder", "reorder_incremental_state", "reorder_encoder_out")}
    search = step * (1 - sum(shares.values()))  # the rest of fairseq's step: search, finalization, bookkeeping
    lean_step = ms["verifier1"] + search
    run.update(timing_prefix=prefix, timing_sentence_steps=len(steps[which]), step_ms=step, search_ms=search,
               step_shares=shares, lean_step_ms=lean_step, costs_ms=ms)
    rows = []
    for width, depth, per_iter, block in configs:
        drafter = ms[f"drafter{width}x{depth}"] if width else 0.0
        verifier, replayed = ms[f"verifier{block}"], per_iter * search
        iteration = drafter + verifier + replayed
        rows.append({"W": width or "oracle", "k": depth, "nodes": (width or BEAM) * depth, "block_per_row": block,
                     "steps_per_iter": per_iter, "drafter_ms": drafter, "verifier_ms": verifier,
                     "replay_ms": replayed, "iteration_ms": iteration, "x_beam5": per_iter * step / iteration,
                     "x_beam5_drafting_free": per_iter * step / (iteration - drafter),
                     "x_lean_beam5": per_iter * lean_step / iteration})
    return rows


def markdown(run: Dict, rows: List[Dict], title: str) -> str:
    shares = run["step_shares"]
    head = (f"### {title}\n\n{run['sentences']} sentences, {run['beam_steps']} beam steps "
            f"({run['beam_steps'] / run['sentences']:.1f} per sentence); fairseq beam 5 over them: "
            f"{run['ms_per_sentence']:.1f} ms/sentence. Timed with the costs below (fastest of "
            f"{run['repeats']} interleaved rounds, {run['threads']} torch thread(s)), on a sentence of "
            f"{run['timing_sentence_steps']} steps: one fairseq beam step {run['step_ms']:.2f} ms (decoder forward "
            f"{shares['forward_decoder']:.0%}, cache reorder "
            f"{shares['reorder_incremental_state'] + shares['reorder_encoder_out']:.0%}, search and the rest "
            f"{run['search_ms']:.2f} ms); a lean beam step (the lean verifier's forward of 5 rows after their "
            f"reorder, + that search) {run['lean_step_ms']:.2f} ms. Costs at prefix length {run['timing_prefix']} "
            f"(the mean step).\n\n")
    for width, shares in run["reach_shares"].items():
        head += (f"W={width}: share of steps whose tree holds the kept sets of the next d steps, d = 1.."
                 f"{len(shares)}: " + ", ".join(f"{x:.2f}" for x in shares) + "\n")
    head += "\n"
    cols = ["W", "k", "nodes", "block_per_row", "steps_per_iter", "drafter_ms", "verifier_ms", "replay_ms",
            "iteration_ms", "x_beam5", "x_beam5_drafting_free", "x_lean_beam5"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    return head + "\n".join(lines) + "\n"


def main(argv=None) -> Dict:
    args = build_parser().parse_args(argv)
    args.width_list = [int(w) for w in args.widths.split(",")]
    args.depth_list = [int(k) for k in args.depths.split(",")]
    torch.set_num_threads(args.threads)
    task, model, proposer = load(args)
    dataset = FirstN(task.dataset(args.subset), args.max_sentences)
    batches = make_batches(task, model, dataset, 1, torch.device("cpu"))
    tgt_dict = task.target_dictionary
    start = time.perf_counter()
    run = run_fairseq(model, tgt_dict, batches, args)
    run.update(threads=args.threads, repeats=args.repeats)
    print(f"fairseq beam 5: {time.perf_counter() - start:.0f} s", flush=True)
    reaches = {}
    if args.reach_from:
        reaches = load_reaches(args.reach_from, args.width_list, run["steps"])
    for width in [w for w in args.width_list if w not in reaches]:
        start = time.perf_counter()
        reaches[width] = simulate(lambda net_input: ChainTreeDrafter(proposer, model, net_input), batches,
                                  run["steps"], width, max(args.depth_list), tgt_dict.eos())
        print(f"simulated W={width}: {time.perf_counter() - start:.0f} s", flush=True)
    if args.check_sentences:
        run["check"] = check_replay(model, batches[:args.check_sentences], run["steps"], max(args.depth_list),
                                    tgt_dict.eos())
        print(f"check (the verifier as its own drafter, W={BEAM}): {run['check']}", flush=True)
    run["reach_shares"] = {w: reach_shares(r, max(args.depth_list)) for w, r in reaches.items()}
    rows = cost_rows(args, model, tgt_dict, proposer, batches, run, reaches, tgt_dict.eos())
    text = markdown(run, rows, f"{args.data} ({args.subset}, batch 1, CPU)")
    print(text)
    report = {"args": vars(args), "run": {k: v for k, v in run.items() if k != "steps"}, "rows": rows,
              "reach": {str(w): r for w, r in reaches.items()},
              "kept": [[list(map(list, s.hypotheses)) for s in sentence] for sentence in run["steps"]]}
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(os.path.join(args.out_dir, "beam_potential.json"), "w") as f:
            json.dump(report, f)
        with open(os.path.join(args.out_dir, "table.md"), "w") as f:
            f.write(text)
    return report


if __name__ == "__main__":
    main()
