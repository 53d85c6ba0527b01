"""Turn fairseq-generate outputs (H-<id> lines) of the training set back into a parallel
corpus in the original order: line i of the source file with the hypothesis of id i.
Sentences fairseq skipped (over-long) are left out of both sides and counted."""
import argparse
import os
import sys


def read_hypotheses(paths):
    hyps = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("H-"):
                    head, _score, text = line.rstrip("\n").split("\t", 2)
                    hyps[int(head[2:])] = text
    return hyps


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("generate_outputs", nargs="+")
    parser.add_argument("--source", required=True, help="the BPE'd source side of the training set")
    parser.add_argument("--out-prefix", required=True)
    parser.add_argument("--src", required=True)
    parser.add_argument("--tgt", required=True)
    args = parser.parse_args()
    hyps = read_hypotheses(args.generate_outputs)
    if not hyps:
        sys.exit(f"error: no H- lines in {args.generate_outputs}")
    kept = skipped = 0
    src_out, tgt_out = f"{args.out_prefix}.{args.src}", f"{args.out_prefix}.{args.tgt}"
    with open(args.source, encoding="utf-8") as fs, open(src_out + ".tmp", "w", encoding="utf-8") as os_, \
            open(tgt_out + ".tmp", "w", encoding="utf-8") as ot:
        for i, src in enumerate(fs):
            if i in hyps:
                os_.write(src)
                ot.write(hyps[i] + "\n")
                kept += 1
            else:
                skipped += 1
    if max(hyps) >= kept + skipped:
        sys.exit(f"error: hypothesis id {max(hyps)} beyond the {kept + skipped} lines of {args.source}")
    os.replace(src_out + ".tmp", src_out)
    os.replace(tgt_out + ".tmp", tgt_out)
    print(f"collect_hypotheses: {kept} pairs in corpus order, {skipped} sentences without a hypothesis")


if __name__ == "__main__":
    main()
