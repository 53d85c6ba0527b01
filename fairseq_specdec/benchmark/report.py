"""The benchmark's outputs: figures per (mode, batch size), the markdown table, the
JSON report (with machine information) and the PNG plots."""
import importlib.util
import json
import math
import os
import platform
import time
from typing import Dict, List, Optional

import torch

from fairseq_specdec.benchmark.modes import DRAFTED_MODES, NGRAM_MODES, SAMPLING_MODES, SPECDEC_MODES

REAL_DRAFTS = DRAFTED_MODES + NGRAM_MODES  # SpecDec modes whose drafts are not the oracle's


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


# ---------------------------------------------------------------------- figures
def _detokenizer(lang: str):
    from sacremoses import MosesDetokenizer

    detok = MosesDetokenizer(lang=lang)
    return lambda text: detok.detokenize(text.split())


def _texts(tgt_dict, token_lists, detok, escape_unk: bool) -> List[str]:
    return [detok(tgt_dict.string(torch.tensor(t, dtype=torch.long), "subword_nmt", escape_unk=escape_unk))
            for t in token_lists]


def corpus_bleu(hyps: List[str], refs: List[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_bleu(hyps, [refs]).score)


def _ratio(num: Optional[float], den: Optional[float]) -> Optional[float]:
    return num / den if num and den else None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(args, ct2: Optional[Dict]) -> Dict:
    import fairseq
    import sacrebleu

    cuda = args.device.startswith("cuda")
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "fairseq": getattr(fairseq, "__version__", "?"),
        "sacrebleu": sacrebleu.__version__,
        "ctranslate2": ct2["version"] if ct2 else None,
        "torch_threads": torch.get_num_threads(),
        "load_average_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "device": args.device,
        "device_name": torch.cuda.get_device_name(torch.device(args.device)) if cuda else cpu_model(),
        "dtype": "float16" if args.fp16 else "float32",
    }


def peak_memory_note(cuda: bool, cuda_graphs: bool) -> str:
    if not cuda:
        return "process peak RSS (getrusage ru_maxrss): monotone over the whole run"
    note = "torch.cuda.max_memory_allocated, reset before each mode (CTranslate2: not measured)"
    if cuda_graphs:
        note += ("; with --cuda-graphs every graphed mode's static buffers and graph memory stay allocated "
                 "and count in every mode's peak")
    return note


def build_report(args, modes, per_bs, dataset, task, src: str, tgt: str, argv: List[str],
                 ct2: Optional[Dict] = None) -> Dict:
    """Figures per (mode, batch size) from the timings, outputs and DecodingStats of ``per_bs``."""
    tgt_dict = task.target_dictionary
    detok = _detokenizer(tgt)
    ids = sorted(next(iter(per_bs.values()))[modes[0]]["tokens"])
    refs = _texts(tgt_dict, [dataset[i]["target"].tolist() for i in ids], detok, escape_unk=True)
    n, rows = len(ids), []
    for bs, results in per_bs.items():
        base = {m: results[m]["median_s"] for m in ("greedy", "greedy_lean", "beam5") if m in results}
        greedy_out = results["greedy"]["tokens"] if "greedy" in results else None
        for m in modes:
            r = results[m]
            hyps = _texts(tgt_dict, [r["tokens"][i] for i in ids], detok, escape_unk=False)
            median = r["median_s"]
            row = {
                "mode": m, "batch": bs, "bleu": corpus_bleu(hyps, refs), "sentences": n,
                "times_s": r["times"], "median_s": median, "sent_per_s": n / median,
                "latency_ms": 1000 * median / n if bs == 1 else None,
                "x_greedy": _ratio(base.get("greedy"), median), "x_beam5": _ratio(base.get("beam5"), median),
                "x_lean_greedy": _ratio(base.get("greedy_lean"), median),
                "peak_mb": r["peak_mb"], "at_length_limit": r["at_length_limit"],
                "differing_from_greedy": None, "identical_to_greedy": None,
                "tok_per_iter": None, "drafts_per_iter": None, "wasted_per_iter": None, "greedy_share": None,
            }
            if greedy_out is not None and m != "greedy" and m not in SAMPLING_MODES:  # samples differ by design
                diff = sum(greedy_out[i] != r["tokens"][i] for i in ids)
                row.update(differing_from_greedy=diff, identical_to_greedy=diff == 0)
            stats = r["stats"]
            if stats is not None:
                summary = stats.summary()
                passes = stats.sentences / n if n else 0
                row.update(
                    tok_per_iter=summary["mean_committed_tokens"],
                    drafts_per_iter=summary["mean_drafted_tokens"],  # the k chosen, on average
                    wasted_per_iter=summary["wasted_drafts_per_iteration"],  # drafted, not accepted
                    greedy_share=summary["greedy_iteration_share"],  # iterations that drafted nothing
                    mean_accepted_drafts=summary["mean_accepted_drafts"],
                    iterations_per_sentence=summary["iterations_per_sentence"],
                    accepted_histogram=list(stats.accepted_histogram), passes=passes,
                    seconds_per_pass={k: v / max(passes, 1) for k, v in stats.seconds.items()},
                )
            rows.append(row)
    cuda = args.device.startswith("cuda")
    return {
        "command": argv,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {k: v for k, v in vars(args).items()},
        "data": {"dir": args.data, "subset": args.subset, "source_lang": src, "target_lang": tgt,
                 "sentences": n},
        "verifier": args.verifier, "drafter": args.drafter,
        "machine": machine_info(args, ct2),
        "ctranslate2": ct2,  # version, threads, compute type per mode, the timing process (pid, torch_imported)
        "modes": modes,
        "peak_memory": peak_memory_note(cuda, args.cuda_graphs),
        "bleu": "sacrebleu corpus BLEU, detokenized (sacremoses) hypotheses vs the binarized targets "
                "processed the same way",
        "at_length_limit": "outputs as long as their length limit (max_len_a x the batch's padded source "
                           "length with eos + max_len_b): ended by the limit, not by the model",
        "rows": rows,
    }


# ---------------------------------------------------------------------- text
def _fmt(value, spec: str = ".2f", empty: str = "-") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return empty
    return format(value, spec)


def markdown_table(report: Dict) -> str:
    head = ["mode", "batch", "BLEU", "sent/s", "ms/sent", "x greedy", "x lean greedy", "x beam5", "tok/iter",
            "drafts/iter", "wasted/iter", "greedy steps", "identical", "at len limit", "peak MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in report["rows"]:
        if r["identical_to_greedy"] is None:
            same = "-"
        else:
            same = "yes" if r["identical_to_greedy"] else f"no ({r['differing_from_greedy']})"
        cells = [r["mode"], str(r["batch"]), _fmt(r["bleu"]), _fmt(r["sent_per_s"], ".1f"),
                 _fmt(r["latency_ms"], ".1f"), _fmt(r["x_greedy"]), _fmt(r.get("x_lean_greedy")), _fmt(r["x_beam5"]),
                 _fmt(r["tok_per_iter"]), _fmt(r["drafts_per_iter"]), _fmt(r["wasted_per_iter"]),
                 _fmt(r["greedy_share"], ".0%"), same, str(r["at_length_limit"]),
                 _fmt(r["peak_mb"], ".0f", "n/a")]
        lines.append("| " + " | ".join(cells) + " |")
    m = report["machine"]
    lines.append("")
    lines.append(f"{report['data']['sentences']} sentences of {report['data']['subset']}, "
                 f"{m['device_name']} ({m['device']}, {m['dtype']}), torch threads {m['torch_threads']}; "
                 f"median of {report['config']['repeats']} interleaved repeats after "
                 f"{report['config']['warmup']} warm-up. ms/sent: latency at batch 1. "
                 f"x greedy: against fairseq's greedy (what fairseq-generate --beam 1 runs); x lean greedy: against "
                 f"greedy_lean, this project's fastest greedy. "
                 f"drafts/iter: tokens drafted per iteration (the k chosen, on average; adaptive modes draft "
                 f"0 to k); wasted/iter: drafted but rejected; greedy steps: iterations that drafted nothing. "
                 f"identical: output equal to greedy's at the same batch size (differing sentences). "
                 f"at len limit: outputs cut by the length limit ({report['config']['max_len_a']:g} x source "
                 f"length + {report['config']['max_len_b']}). "
                 f"peak MB: {report['peak_memory']}.")
    ct2 = report.get("ctranslate2")
    if ct2 and "pid" in ct2:
        kinds = ", ".join(f"{mode} {kind}" for mode, kind in ct2["compute_types"].items())
        lines.append(f"CTranslate2 {ct2['version']} ({kinds}; intra_threads {ct2['threads']}) decodes the same "
                     f"batches with the same length limits in a process of its own (pid {ct2['pid']}, torch "
                     f"{'imported' if ct2['torch_imported'] else 'never imported'}), after the torch modes.")
    return "\n".join(lines)


def profile_table(report: Dict) -> str:
    """Drafter / verifier / other time split of the SpecDec modes at batch 1 (else the smallest)."""
    rows = [r for r in report["rows"] if r["mode"] in SPECDEC_MODES]
    if not rows:
        return "profile: no SpecDec mode was run"
    smallest = min(r["batch"] for r in rows)
    lines = [f"Time split per pass at batch {smallest} (DecodingStats.seconds, mean over repeats)", "",
             "| mode | drafter s | verifier s | other s | drafter % | verifier % | other % |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["batch"] != smallest:
            continue
        sec = r["seconds_per_pass"]
        total = sum(sec.values()) or 1.0
        parts = ("drafter", "verifier", "other")
        lines.append("| " + " | ".join([r["mode"], *(f"{sec.get(p, 0.0):.3f}" for p in parts),
                                        *(f"{100 * sec.get(p, 0.0) / total:.0f}" for p in parts)]) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- files
def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def write_outputs(report: Dict, out_dir: str, text: str, plots: bool = True) -> List[str]:
    """benchmark.json, table.md (the printed text) and the plots; returns their paths. The JSON
    lists the files by name, relative to ``out_dir``, so the folder can be moved."""
    os.makedirs(out_dir, exist_ok=True)
    files = [os.path.join(out_dir, "benchmark.json"), os.path.join(out_dir, "table.md")]
    with open(files[1], "w", encoding="utf-8") as f:
        f.write(text + "\n")
    if plots:
        files += [plot_speedup(report, os.path.join(out_dir, "speedup.png")),
                  plot_accepted(report, os.path.join(out_dir, "accepted_hist.png"))]
    with open(files[0], "w", encoding="utf-8") as f:
        json.dump({**report, "files": [os.path.basename(p) for p in files]}, f, indent=2, default=_json_default)
    return files


def _pyplot():
    import logging

    import matplotlib

    # fairseq's wav2vec2_classification import sets the root logger to DEBUG: keep the font search quiet
    for noisy in ("matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_speedup(report: Dict, path: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    batches = sorted({r["batch"] for r in report["rows"]})
    for mode in report["modes"]:
        rows = sorted((r for r in report["rows"] if r["mode"] == mode and r["x_greedy"]), key=lambda r: r["batch"])
        if not rows:
            continue
        ax.plot([r["batch"] for r in rows], [r["x_greedy"] for r in rows], marker="o", label=mode)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("batch size (sentences)")
    ax.set_ylabel("speedup vs fairseq greedy (x)")
    m = report["machine"]
    ax.set_title(f"{m['device_name'][:48]} ({m['dtype']}), torch threads: {m['torch_threads']}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_accepted(report: Dict, path: str) -> str:
    """Fraction of draft-and-verify iterations that accepted n drafts, per SpecDec mode and batch size."""
    plt = _pyplot()
    modes = [m for m in report["modes"] if m in REAL_DRAFTS]
    fig, axes = plt.subplots(1, max(len(modes), 1), figsize=(5.2 * max(len(modes), 1), 3.8), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        rows = sorted((r for r in report["rows"] if r["mode"] == mode), key=lambda r: r["batch"])
        width = 0.8 / max(len(rows), 1)
        ax.set_xticks(range(max((len(r["accepted_histogram"]) for r in rows), default=1)))
        for j, r in enumerate(rows):
            hist = r["accepted_histogram"]
            total = sum(hist) or 1
            ax.bar([n + (j - (len(rows) - 1) / 2) * width for n in range(len(hist))], [c / total for c in hist],
                   width=width, label=f"batch {r['batch']} ({r['tok_per_iter']:.2f} tok/iter)")
        ax.set_title(mode)
        ax.set_xlabel("accepted drafts per iteration")
        ax.set_ylabel("fraction of iterations")
        ax.legend(fontsize=8)
    if not modes:
        axes[0][0].text(0.5, 0.5, "no SpecDec mode was run", ha="center", va="center")
        axes[0][0].set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

