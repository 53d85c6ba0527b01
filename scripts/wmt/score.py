#!/usr/bin/env python3
"""Score fairseq-generate outputs of the test set and write the evaluation table.

For each decoding (a fairseq-generate output with --remove-bpe, H-<id> lines):

* tokenized BLEU: the hypotheses as they come (Moses-tokenized) against the tokenized
  reference (prepare_bitext.sh's tok/test.TGT), with sacrebleu's tokenize='none', i.e. the
  same 4-gram BLEU as fairseq-score. With --compound-split (EN-DE, the number papers
  report) hyphenated compounds are split on both sides as in fairseq's
  compound_split_bleu.sh (``a-b`` -> ``a ##AT##-##AT## b``); Moses' aggressive hyphen
  split (``a @-@ b``) is first turned back into ``a-b`` so the result is the usual
  compound-split BLEU whichever tokenizer setting made the data.
* detokenized sacreBLEU: the hypotheses detokenized with sacremoses against the raw
  reference (RAW/test.TGT), sacrebleu's default 13a tokenization.

It also reports how many hypotheses are identical to the row named by --same-as (greedy:
lossless SpecDec must reproduce it), the time fairseq-generate reported, and SpecDec's
tokens per iteration and k (in the SpecDec labels) when the log has them.

usage: score.py --row NAME=GEN_FILE [--row ...] --tok-ref tok/test.de --raw-ref raw/test.de
                --lang de [--compound-split] [--same-as greedy] [--beta B --tau T]
                [--title TITLE] --out-md T.md --out-json T.json
NAME is greedy, beam5, specdec or specdec_relaxed (labelled as such), or any other name.
"""
import argparse
import json
import os
import re
import sys

import sacrebleu
from sacremoses import MosesDetokenizer

TRANSLATED = re.compile(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([\d.]+)s")
SPECDEC = re.compile(r"SpecDec: \d+ sentences \| ([\d.]+) tokens per iteration")
BLOCK_SIZE = re.compile(r"decoding with k=(\d+)")  # fairseq_specdec.drafting.block_size: the k used
COMPOUND = re.compile(r"(\S)-(\S)")


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def read_hypotheses(path, n):
    """The H- lines of a fairseq-generate output, in corpus order (exactly n of them)."""
    hyps = {}
    for line in read_lines(path):
        if line.startswith("H-"):
            head, _score, *text = line.split("\t", 2)
            hyps[int(head[2:])] = text[0] if text else ""
    missing = [i for i in range(n) if i not in hyps]
    if missing or len(hyps) != n:
        raise SystemExit(f"error: {path}: {len(hyps)} hypotheses for {n} references "
                         f"(missing ids {missing[:10]}{'...' if len(missing) > 10 else ''})")
    return [hyps[i] for i in range(n)]


def log_figures(paths):
    """(seconds, tokens per SpecDec iteration, k) found in fairseq-generate's output or log."""
    seconds = tokens_per_iter = k = None
    for path in paths:
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = TRANSLATED.search(line)
                if m:
                    seconds = float(m.group(3))
                m = SPECDEC.search(line)
                if m:
                    tokens_per_iter = float(m.group(1))
                m = BLOCK_SIZE.search(line)
                if m:
                    k = int(m.group(1))
    return seconds, tokens_per_iter, k


def compound_split(line):
    return COMPOUND.sub(r"\1 ##AT##-##AT## \2", line.replace(" @-@ ", "-"))


def tokenized_bleu(hyps, refs, split):
    if split:
        hyps, refs = [compound_split(h) for h in hyps], [compound_split(r) for r in refs]
    return sacrebleu.BLEU(tokenize="none", force=True).corpus_score(hyps, [refs]).score


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--row", action="append", required=True, metavar="NAME=GEN",
                        help="a decoding's name and its fairseq-generate output")
    parser.add_argument("--tok-ref", required=True, help="tokenized reference (one sentence per line)")
    parser.add_argument("--raw-ref", required=True, help="raw (detokenized) reference")
    parser.add_argument("--lang", required=True, help="target language (detokenizer)")
    parser.add_argument("--compound-split", action="store_true")
    parser.add_argument("--same-as", default="greedy", help="row the others are compared with, line by line")
    parser.add_argument("--title", default="")
    parser.add_argument("--beta", type=int, default=3, help="beta of specdec_relaxed, for its label")
    parser.add_argument("--tau", type=float, default=1.0, help="tau of specdec_relaxed, for its label")
    parser.add_argument("--out-md", required=True)
    parser.add_argument("--out-json", required=True)
    args = parser.parse_args(argv)

    tok_refs, raw_refs = read_lines(args.tok_ref), read_lines(args.raw_ref)
    if len(tok_refs) != len(raw_refs):
        raise SystemExit(f"error: {args.tok_ref} has {len(tok_refs)} lines, {args.raw_ref} {len(raw_refs)}")
    detok = MosesDetokenizer(lang=args.lang)
    rows, outputs = [], {}
    for row in args.row:
        name, sep, gen = row.partition("=")
        if not sep or not name or not gen:
            parser.error(f"--row {row!r}: expected NAME=GEN_FILE")
        hyps = read_hypotheses(gen, len(tok_refs))
        outputs[name] = hyps
        seconds, tokens_per_iter, block_size = log_figures([gen, gen + ".log"])
        k = f"k={block_size}, " if block_size else ""
        label = {"greedy": "Verifier, greedy", "beam5": "Verifier, beam 5", "specdec": f"SpecDec ({k}beta=1)",
                 "specdec_relaxed": f"SpecDec relaxed ({k}beta={args.beta}, tau={args.tau:g})"}.get(name, name)
        detok_hyps = [detok.detokenize(h.split()) for h in hyps]
        metric = sacrebleu.BLEU()
        sacre = metric.corpus_score(detok_hyps, [raw_refs])
        rows.append({
            "name": name,
            "label": label,
            "tokenized_bleu": round(tokenized_bleu(hyps, tok_refs, args.compound_split), 2),
            "compound_split": args.compound_split,
            "sacrebleu": round(sacre.score, 2),
            "sacrebleu_signature": str(metric.get_signature()),
            "generate_seconds": seconds,
            "tokens_per_iteration": tokens_per_iter,
            "sentences": len(hyps),
        })
    if args.same_as in outputs:
        base = outputs[args.same_as]
        for row in rows:
            same = sum(a == b for a, b in zip(outputs[row["name"]], base))
            row[f"identical_to_{args.same_as}"] = round(100.0 * same / len(base), 2)

    tok_name = "tok. BLEU (compound split)" if args.compound_split else "tok. BLEU"
    lines = []
    if args.title:
        lines += [f"### {args.title}: test set", ""]
    lines += [f"| Decoding | {tok_name} | sacreBLEU | identical to {args.same_as} (%) | tokens/iteration | fairseq-generate time (s) |",
              "|---|---:|---:|---:|---:|---:|"]

    def fmt(value, spec="{:.2f}"):
        return "-" if value is None else spec.format(value)

    for row in rows:
        lines.append(f"| {row['label']} | {row['tokenized_bleu']:.2f} | {row['sacrebleu']:.2f} | "
                     f"{fmt(row.get(f'identical_to_{args.same_as}'), '{:.1f}')} | "
                     f"{fmt(row['tokens_per_iteration'])} | {fmt(row['generate_seconds'], '{:.1f}')} |")
    lines += ["", f"{len(tok_refs)} test sentences. sacreBLEU: detokenized output against the raw reference "
              f"({rows[0]['sacrebleu_signature']}). Times are fairseq-generate's own, "
              f"batched as in generate.args; the latency benchmark is the benchmark stage's table.", ""]
    for path, text in ((args.out_md, "\n".join(lines)), (args.out_json, json.dumps(rows, indent=2) + "\n")):
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    print(f"wrote {args.out_md} and {args.out_json}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
