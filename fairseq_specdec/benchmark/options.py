"""The benchmark's command line: its options, their defaults and their checks (the run itself:
``benchmark.cli``)."""
import argparse
import os
from typing import List

import torch
from fairseq.data.data_utils import infer_language_pair

from fairseq_specdec.benchmark import report as reporting
from fairseq_specdec.benchmark.modes import DEFAULT_MODES, MODES, NEEDS_DRAFTER, NGRAM_MODES, ORACLE_MODES

# Length limits as a translation user sets them: at most 1.2 x source length + 10 tokens.
# Why these two values: configs/length_limits.env, which sets the same ones for the scripts.
DEFAULT_MAX_LEN_A = 1.2
DEFAULT_MAX_LEN_B = 10


class BenchmarkError(Exception):
    """Bad input: reported as one line, without a traceback, by ``cli_main``."""


def parse_batch_sizes(text: str) -> List[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch-sizes wants comma-separated integers such as 1,8,32; got {text!r}")
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--batch-sizes wants positive integers such as 1,8,32; got {text!r}")
    return sorted(set(sizes))


def parse_modes(text: str) -> List[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"unknown mode(s) {', '.join(unknown) or text!r}; choose from {', '.join(MODES)}")
    return [m for m in MODES if m in modes]  # canonical order, no duplicates


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="specdec-benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="fairseq binarized data directory (dict.*.txt, SUBSET.*)")
    p.add_argument("--verifier", required=True, help="verifier checkpoint (stock fairseq transformer)")
    p.add_argument("--drafter", help="Spec-Drafter checkpoint (needed by the specdec modes)")
    p.add_argument("--source-lang", "-s", help="default: inferred from the data directory, else en")
    p.add_argument("--target-lang", "-t", help="default: inferred from the data directory, else de")
    p.add_argument("--subset", default="test")
    p.add_argument("--max-sentences", type=int, help="only the first N sentences of the subset")
    p.add_argument("--batch-sizes", type=parse_batch_sizes, default=[1, 8, 32], help="default 1,8,32")
    p.add_argument("--modes", type=parse_modes, default=list(DEFAULT_MODES),
                   help=f"subset of {','.join(MODES)}; default all but the {' and '.join(ORACLE_MODES)} bounds "
                        f"and the n-gram modes ({', '.join(NGRAM_MODES)})")
    p.add_argument("--bounds", action="store_true",
                   help=f"add the {' and '.join(ORACLE_MODES)} modes: SpecDec with perfect drafts, with and "
                        f"without the drafter's cost (see bench_decoders)")
    p.add_argument("--block-size", type=int,
                   help="k drafted tokens per iteration; default: the k the drafter was trained with")
    p.add_argument("--beta", type=int, default=3, help="specdec_relaxed: top-beta acceptance")
    p.add_argument("--tau", type=float, default=1.0, help="specdec_relaxed: log-prob tolerance")
    p.add_argument("--ngram-data", help="n-gram modes: binarized data directory whose train targets feed the "
                                        "n-gram index (default: --data)")
    p.add_argument("--ngram-order", type=int, default=4, help="n-gram modes: longest context looked up")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, help="torch.set_num_threads (and CTranslate2 intra_threads)")
    p.add_argument("--max-len-a", type=float, default=DEFAULT_MAX_LEN_A,
                   help=f"at most max-len-a * source length + max-len-b tokens; default {DEFAULT_MAX_LEN_A}")
    p.add_argument("--max-len-b", type=int, default=DEFAULT_MAX_LEN_B, help=f"default {DEFAULT_MAX_LEN_B}")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--fp16", action="store_true", help="half precision (CUDA only)")
    p.add_argument("--draft-vocab", type=int, default=0,
                   help="the chain drafter drafts among the N most frequent train target tokens of --data "
                        "(0: the whole vocabulary; its confidence is then a softmax over those N)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="greedy_lean and the specdec modes record their fixed-shape forwards as CUDA graphs "
                        "(during the warm-up) and replay them (CUDA only)")
    p.add_argument("--ctranslate2", choices=("auto", "on", "off"), default="auto",
                   help="ct2_* modes: auto = when ctranslate2 is importable")
    p.add_argument("--out-dir", help="write benchmark.json, table.md, speedup.png, accepted_hist.png here")
    p.add_argument("--no-plots", action="store_true", help="with --out-dir: skip the PNG plots")
    p.add_argument("--profile", action="store_true", help="print drafter/verifier/other time split at batch 1")
    p.add_argument("--quiet", action="store_true", help="only warnings from fairseq's loggers")
    return p


def _check_args(args) -> None:
    if not os.path.isdir(args.data):
        raise BenchmarkError(f"--data {args.data!r}: no such directory (give fairseq-preprocess's --destdir)")
    if not os.path.isfile(args.verifier):
        raise BenchmarkError(f"--verifier {args.verifier!r}: no such file")
    for name in ("repeats", "block_size", "beta", "ngram_order"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise BenchmarkError(f"--{name.replace('_', '-')} must be >= 1")
    if args.tau < 0:
        raise BenchmarkError(f"--tau must be >= 0 (a log-probability tolerance), got {args.tau}")
    if args.warmup < 0 or (args.max_sentences is not None and args.max_sentences < 1):
        raise BenchmarkError("--warmup must be >= 0 and --max-sentences >= 1")
    if args.threads is not None and args.threads < 1:
        raise BenchmarkError("--threads must be >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchmarkError(f"--device {args.device}: CUDA is not available")
    if args.fp16 and not args.device.startswith("cuda"):
        raise BenchmarkError("--fp16 needs --device cuda")
    if args.draft_vocab < 0:
        raise BenchmarkError("--draft-vocab must be >= 1 (or 0 for the whole vocabulary)")
    if args.cuda_graphs and not args.device.startswith("cuda"):
        raise BenchmarkError("--cuda-graphs needs --device cuda")
    if args.cuda_graphs and args.warmup < 1:
        raise BenchmarkError("--cuda-graphs records its graphs during the warm-up: use --warmup 1 or more")
    needing = [m for m in args.modes if m in NEEDS_DRAFTER]
    if needing:
        if not args.drafter:
            raise BenchmarkError(f"--drafter is required for the modes {', '.join(needing)} "
                                 f"(or leave them out with --modes)")
        if not os.path.isfile(args.drafter):
            raise BenchmarkError(f"--drafter {args.drafter!r}: no such file")
    if args.out_dir and not args.no_plots and not reporting.have_matplotlib():
        raise BenchmarkError("the plots need matplotlib: pip install matplotlib (or pass --no-plots)")


def _languages(args):
    src, tgt = args.source_lang, args.target_lang
    if src is None or tgt is None:
        inferred = infer_language_pair(args.data) or (None, None)
        src, tgt = src or inferred[0] or "en", tgt or inferred[1] or "de"
    for lang in (src, tgt):
        if not os.path.isfile(os.path.join(args.data, f"dict.{lang}.txt")):
            raise BenchmarkError(f"--data {args.data!r} has no dict.{lang}.txt (set --source-lang/--target-lang)")
    return src, tgt
