"""Drop parallel sentence pairs that are empty, longer than --max-len tokens, or whose
length ratio exceeds --max-ratio (what Moses' clean-corpus-n.perl does). Writes
atomically and reports how many pairs were dropped."""
import argparse
import itertools
import os


def keep(src: str, tgt: str, max_len: int, max_ratio: float) -> bool:
    n, m = len(src.split()), len(tgt.split())
    if n == 0 or m == 0 or n > max_len or m > max_len:
        return False
    return max(n, m) / min(n, m) <= max_ratio


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("in_prefix")
    parser.add_argument("out_prefix")
    parser.add_argument("src")
    parser.add_argument("tgt")
    parser.add_argument("--max-len", type=int, default=250)
    parser.add_argument("--max-ratio", type=float, default=1.5)
    args = parser.parse_args()
    paths = {lang: (f"{args.in_prefix}.{lang}", f"{args.out_prefix}.{lang}") for lang in (args.src, args.tgt)}
    kept = total = 0
    with open(paths[args.src][0], encoding="utf-8") as fs, open(paths[args.tgt][0], encoding="utf-8") as ft, \
            open(paths[args.src][1] + ".tmp", "w", encoding="utf-8") as os_, \
            open(paths[args.tgt][1] + ".tmp", "w", encoding="utf-8") as ot:
        for src, tgt in itertools.zip_longest(fs, ft):
            if src is None or tgt is None:
                raise SystemExit(f"error: {paths[args.src][0]} and {paths[args.tgt][0]} differ in line count")
            total += 1
            if keep(src, tgt, args.max_len, args.max_ratio):
                os_.write(src)
                ot.write(tgt)
                kept += 1
    # the target file is the step's marker: move it last
    os.replace(paths[args.src][1] + ".tmp", paths[args.src][1])
    os.replace(paths[args.tgt][1] + ".tmp", paths[args.tgt][1])
    print(f"clean_corpus: kept {kept} of {total} pairs ({total - kept} dropped)")


if __name__ == "__main__":
    main()
