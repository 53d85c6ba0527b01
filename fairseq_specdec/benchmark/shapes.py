"""Timing at the shapes users run, without trained weights.

Verifiers of fairseq's registered Transformer-base and -big architectures
(``transformer_wmt_en_de``, ``transformer_vaswani_wmt_en_de_big``) with a 32k joint
vocabulary and random weights, and a drafter of each kind at the same width, timed by the
benchmark's own modes: fairseq's greedy, our lean greedy, and SpecDec with perfect drafts,
the drafter paid (``specdec_oracle``: it runs, its drafts are thrown away) and free
(``specdec_oracle_free``). Speed depends on shapes, not on weights. The lengths come from a
real test set: each synthetic source is as long as a real target (one per line of
``--lengths``, tokens split on spaces), and ``--max-len-a 1 --max-len-b 0`` makes every
output exactly that long (a random verifier emits end-of-sentence with probability about
1/32k per step). Both models are written by ``fairseq-train`` itself (one update at a
learning rate of 1e-9: the weights stay at fairseq's initialization), so the checkpoints
load like any user's.

    python -m fairseq_specdec.benchmark.shapes --size base --lengths work/gettext/prep/bpe/test.fr \\
        --work work/shapes --batch-sizes 1,8,32,128

Writes ``WORK/SIZE/shapes.json`` and prints one table: per drafter kind and batch size, the
seconds per pass of each mode, the ratios to fairseq's greedy, the drafter's cost per
iteration (paid minus free, per iteration) and the projection with a real-text acceptance
(``--accept KIND=TOKENS_PER_ITERATION``, measured at the same k). ``--table-only`` reprints
the table of an earlier run from its shapes.json.
"""
import argparse
import itertools
import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from fairseq_specdec.benchmark import cli as benchmark

logger = logging.getLogger("fairseq_specdec.benchmark.shapes")
USER_DIR = str(Path(__file__).resolve().parents[1])
VOCAB = 32000  # joint dictionary, fairseq's 4 special symbols included
SIZES = {  # fairseq's registered architecture and its widths (the drafters are built at the same ones)
    "base": {"arch": "transformer_wmt_en_de", "dim": 512, "ffn": 2048, "heads": 8},
    "big": {"arch": "transformer_vaswani_wmt_en_de_big", "dim": 1024, "ffn": 4096, "heads": 16},
}
STATE = ["--init-decoder-from-verifier", "--share-verifier-encoder"]
DRAFTERS = {  # the drafter kinds: architecture, criterion and what they take from the verifier
    "chain": ["--arch", "specdec_drafter_chain", "--criterion", "specdec_chain", *STATE],
    "feature": ["--arch", "specdec_drafter_feature", "--criterion", "specdec_feature", *STATE],
    "spec_drafter": ["--arch", "specdec_drafter_base", "--criterion", "specdec_glancing"],  # the paper's: 12+2 layers
}
MODES = "greedy,greedy_lean,specdec_oracle,specdec_oracle_free"
ONE_UPDATE = ["--optimizer", "adam", "--lr", "1e-9", "--max-tokens", "512", "--max-update", "1", "--cpu",
              "--no-save-optimizer-state", "--no-epoch-checkpoints", "--disable-validation", "--seed", "1",
              "--dropout", "0.0", "--no-progress-bar", "--log-interval", "1"]


def run(cmd: List[str]) -> None:
    """Run a command; on failure show its last lines and stop."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"shapes: command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stderr[-3000:]}")


def real_lengths(path: Path) -> List[int]:
    lengths = [len(line.split()) for line in path.read_text(encoding="utf-8").splitlines()]
    lengths = [n for n in lengths if n > 0]
    if not lengths:
        raise SystemExit(f"shapes: --lengths {path}: no non-empty line")
    return lengths


def write_corpus(raw: Path, lengths: List[int], train: int, seed: int = 1) -> Path:
    """A joint dictionary of VOCAB symbols and random text: the test pairs have the real
    lengths (source = target length); the train pairs (for fairseq-train's one update and
    --draft-vocab's counts) draw their tokens Zipf-like."""
    raw.mkdir(parents=True, exist_ok=True)
    symbols = [f"w{i}" for i in range(VOCAB - 4)]
    (raw / "dict.txt").write_text("".join(f"{s} {VOCAB - i}\n" for i, s in enumerate(symbols)))
    rng = random.Random(seed)
    cumulative = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(symbols))))

    def sentences(counts):
        return "".join(" ".join(rng.choices(symbols, cum_weights=cumulative, k=n)) + "\n" for n in counts)

    for split, counts in (("test", lengths), ("train", [rng.choice(lengths) for _ in range(train)]),
                          ("valid", lengths[:20])):
        for side in ("src", "tgt"):
            (raw / f"{split}.{side}").write_text(sentences(counts))
    return raw / "dict.txt"


def prepare(work: Path, lengths: List[int]) -> Path:
    data = work / "bin"
    if (data / "test.src-tgt.src.bin").exists():
        return data
    raw = work / "raw"
    dictionary = write_corpus(raw, lengths, train=2000)
    run(["fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--trainpref", raw / "train",
         "--validpref", raw / "valid", "--testpref", raw / "test", "--srcdict", dictionary, "--tgtdict", dictionary,
         "--destdir", data, "--workers", "1"])
    return data


def widths(size: str) -> List[str]:
    s, flags = SIZES[size], []
    for side in ("encoder", "decoder"):
        flags += [f"--{side}-embed-dim", str(s["dim"]), f"--{side}-ffn-embed-dim", str(s["ffn"]),
                  f"--{side}-attention-heads", str(s["heads"])]
    return flags


def train_once(data: Path, save: Path, flags: List[str]) -> Path:
    checkpoint = save / "checkpoint_last.pt"
    if not checkpoint.exists():
        run(["fairseq-train", data, "--user-dir", USER_DIR, *ONE_UPDATE, "--save-dir", save, *flags])
    return checkpoint


def build_models(work: Path, data: Path, size: str, kinds: List[str], k: int) -> Dict[str, Path]:
    verifier = train_once(data, work / "verifier", [
        "--task", "translation", "--arch", SIZES[size]["arch"], "--share-all-embeddings",
        "--criterion", "label_smoothed_cross_entropy"])
    drafters = {kind: train_once(data, work / f"drafter_{kind}", [
        "--task", "specdec_translation", *DRAFTERS[kind], *widths(size), "--share-all-embeddings",
        "--block-size", str(k), "--init-from-verifier", verifier]) for kind in kinds}
    return {"verifier": verifier, **drafters}


def time_drafter(data, verifier, drafter, batch_size: int, sentences: int, args, extra=()) -> Dict[str, dict]:
    """The benchmark's rows (mode -> row) at one batch size."""
    argv = ["--data", str(data), "--verifier", str(verifier), "--drafter", str(drafter), "--modes", MODES,
            "--batch-sizes", str(batch_size), "--max-sentences", str(sentences), "--max-len-a", "1",
            "--max-len-b", "0", "--repeats", str(args.repeats), "--warmup", "1", "--source-lang", "src",
            "--target-lang", "tgt", "--quiet", *extra]
    report = benchmark.main(argv)
    return {row["mode"]: row for row in report["rows"]}


def summarize(kind: str, bs: int, rows: Dict[str, dict], accept: Dict[str, float]) -> dict:
    """One line of the table. ``iteration_ms`` and ``drafter_ms`` are per row and iteration
    (at batch 1: per iteration); ``drafter_share`` is the drafter's part of the paid time."""
    greedy, paid, free = rows["greedy"], rows["specdec_oracle"], rows["specdec_oracle_free"]
    iterations = paid["iterations_per_sentence"] * paid["sentences"]
    line = {"drafter": kind, "batch": bs, "sentences": greedy["sentences"],
            "greedy_s": greedy["median_s"], "x_lean": rows["greedy_lean"]["x_greedy"],
            "x_paid": paid["x_greedy"], "x_free": free["x_greedy"], "tok_per_iter": paid["tok_per_iter"],
            "iteration_ms": 1000 * paid["median_s"] / iterations,
            "drafter_ms": 1000 * (paid["median_s"] - free["median_s"]) / iterations,
            "drafter_share": 1 - free["median_s"] / paid["median_s"],
            "identical": all(rows[m]["identical_to_greedy"] for m in rows if m != "greedy")}
    if kind in accept:  # the same iterations' cost, with the real-text tokens per iteration
        real_iterations = iterations * paid["tok_per_iter"] / accept[kind]
        line["projected_x_greedy"] = greedy["median_s"] / (real_iterations * line["iteration_ms"] / 1000)
    return line


def table(lines: List[dict], size: str, k: int) -> str:
    head = (f"| {size}, k={k} | batch | x lean greedy | x greedy, perfect drafts, drafter paid / free | "
            f"tok/iter | drafter share of the time | drafter ms/iter (batch 1) | projected x greedy "
            f"(real-text acceptance) |\n|---|---|---|---|---|---|---|---|\n")
    body = ""
    for x in lines:
        projected = f"{x['projected_x_greedy']:.2f}" if "projected_x_greedy" in x else "-"
        per_iteration = f"{x['drafter_ms']:.1f}" if x["batch"] == 1 else "-"
        body += (f"| {x['drafter']} | {x['batch']} | {x['x_lean']:.2f} | {x['x_paid']:.2f} / {x['x_free']:.2f} | "
                 f"{x['tok_per_iter']:.2f} | {1 - x['x_paid'] / x['x_free']:.0%} | {per_iteration} | {projected} |\n")
    return head + body


def parse_accept(items: List[str]) -> Dict[str, float]:
    out = {}
    for item in items:
        kind, _, value = item.partition("=")
        try:
            out[kind] = float(value)
        except ValueError:
            raise SystemExit(f"shapes: --accept wants KIND=TOKENS_PER_ITERATION, got {item!r}") from None
    return out


def main(argv=None) -> List[dict]:
    p = argparse.ArgumentParser(prog="python -m fairseq_specdec.benchmark.shapes", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), required=True)
    p.add_argument("--lengths", type=Path, required=True, help="a real test set's target text (tokens per line)")
    p.add_argument("--work", type=Path, required=True, help="data and checkpoints go to WORK/SIZE (reused)")
    p.add_argument("--drafters", default="chain,feature,spec_drafter", help=f"subset of {','.join(DRAFTERS)}")
    p.add_argument("--block-size", type=int, default=6, help="k of every drafter (default 6)")
    p.add_argument("--batch-sizes", default="1,8,32,128")
    p.add_argument("--sentences", type=int, default=24, help="sentences timed per batch size (at least one batch)")
    p.add_argument("--draft-vocab", type=int, default=0, help="also time the chain drafter with --draft-vocab N")
    p.add_argument("--accept", action="append", default=[], help="KIND=TOKENS_PER_ITERATION measured on real text")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--table-only", action="store_true", help="reprint WORK/SIZE/shapes.json's table and stop")
    args = p.parse_args(argv)
    if args.table_only:
        lines = json.loads((args.work / args.size / "shapes.json").read_text())["lines"]
        print(table(lines, args.size, args.block_size))
        return lines
    kinds = [k for k in args.drafters.split(",") if k]
    unknown = [k for k in kinds if k not in DRAFTERS]
    if unknown:
        p.error(f"--drafters: unknown kind(s) {', '.join(unknown)}; choose from {', '.join(DRAFTERS)}")
    accept = parse_accept(args.accept)
    work = args.work / args.size
    data = prepare(work, real_lengths(args.lengths))
    paths = build_models(work, data, args.size, kinds, args.block_size)
    runs = [(kind, paths[kind], ()) for kind in kinds]
    if args.draft_vocab and "chain" in kinds:
        runs.append((f"chain, draft vocab {args.draft_vocab}", paths["chain"], ("--draft-vocab", str(args.draft_vocab))))
    lines = []
    for bs in benchmark.parse_batch_sizes(args.batch_sizes):
        sentences = max(args.sentences, bs)  # at least one full batch
        for kind, drafter, extra in runs:
            rows = time_drafter(data, paths["verifier"], drafter, bs, sentences, args, extra)
            lines.append(summarize(kind, bs, rows, accept))
            logger.info("%s", lines[-1])
    text = table(lines, args.size, args.block_size)
    print(text)
    (work / "shapes.json").write_text(json.dumps({"argv": sys.argv if argv is None else argv, "lines": lines},
                                                 indent=1))
    (work / "shapes.md").write_text(text)
    return lines


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO"), format="%(asctime)s | %(message)s")
    main()
