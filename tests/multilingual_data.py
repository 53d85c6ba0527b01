"""A tiny generated multilingual corpus (English to two made-up languages) and its
binarization with one shared dictionary, as fairseq's multilingual task expects."""
import random
import sys
from pathlib import Path

WORDS = ["the", "king", "queen", "sees", "a", "big", "small", "house", "dog", "cat", "runs", "near", "old",
         "red", "tree", "river", "walks", "to", "and", "city", "green", "bird", "sings", "under"]
PAIRS = ("en-fr", "en-es")


def translate(words, lang: str):
    """fr: each word marked, same order; es: each word marked, order reversed."""
    if lang == "fr":
        return [w + "_f" for w in words]
    return [w + "_e" for w in reversed(words)]


def write_corpus(raw: Path, sizes=(("train", 600), ("valid", 40), ("test", 30)), seed: int = 3) -> Path:
    """Raw text files ``{split}.en-{lang}.{en,lang}`` and a shared ``dict.txt``."""
    raw.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for pair in PAIRS:
        tgt = pair.split("-")[1]
        for split, n in sizes:
            sources = [[rng.choice(WORDS) for _ in range(rng.randint(3, 8))] for _ in range(n)]
            (raw / f"{split}.{pair}.en").write_text("".join(" ".join(s) + "\n" for s in sources))
            (raw / f"{split}.{pair}.{tgt}").write_text("".join(" ".join(translate(s, tgt)) + "\n" for s in sources))
    symbols = WORDS + [w + "_f" for w in WORDS] + [w + "_e" for w in WORDS]
    (raw / "dict.txt").write_text("".join(f"{w} 1\n" for w in symbols))
    return raw / "dict.txt"


def binarize(raw: Path, dest: Path) -> None:
    """fairseq-preprocess's main once per pair (in one process), every pair with the shared dictionary."""
    from fairseq import options
    from fairseq_cli import preprocess

    for pair in PAIRS:
        src, tgt = pair.split("-")
        argv = ["--source-lang", src, "--target-lang", tgt, "--trainpref", raw / f"train.{pair}",
                "--validpref", raw / f"valid.{pair}", "--testpref", raw / f"test.{pair}", "--srcdict",
                raw / "dict.txt", "--tgtdict", raw / "dict.txt", "--destdir", dest, "--workers", "1"]
        preprocess.main(options.get_preprocessing_parser().parse_args([str(a) for a in argv]))


if __name__ == "__main__":  # python multilingual_data.py ROOT: ROOT/raw and ROOT/bin
    root = Path(sys.argv[1])
    write_corpus(root / "raw")
    binarize(root / "raw", root / "bin")
