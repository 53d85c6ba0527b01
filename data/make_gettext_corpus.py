#!/usr/bin/env python3
"""A real-text parallel corpus from the gettext catalogs installed on this machine.

Debian packages install their translations as compiled catalogs,
``/usr/share/locale/<lang>/LC_MESSAGES/<package>.mo``: each entry pairs an English
``msgid`` with its translation ``msgstr``. This script reads every catalog of one
language (English -> ``--lang``, French by default) and writes a line-aligned corpus
``OUT/{train,valid,test}.{en,<lang>}``:

* contexts (``msgctxt``) are dropped from the key, plural entries give two pairs (the
  singular msgid with the first form, the plural msgid with the last form);
* placeholders (``%s``, ``{name}``) and markup (``<b>``, ``_File``) are kept as written;
  line breaks and tabs inside a message become spaces;
* dropped: the header, untranslated entries, sources without a letter (a placeholder's
  counts: ``%s: %s`` -> ``%s : %s`` is French typography), messages longer
  than ``--max-words`` on either side, and pairs whose word counts differ by more than
  ``--max-ratio`` (both counted after whitespace splitting);
* duplicates: a source that several catalogs translate keeps its most frequent
  translation (ties: the smallest string), so every source occurs once and the splits
  share no source;
* a fixed split: the sorted sources are shuffled with ``random.Random(seed)``; the first
  ``--test`` are the test set, the next ``--valid`` the validation set, the rest train.

With ``--extra-sources``, ``OUT/extra.en`` also lists the English msgids of every other
language's catalogs that are not sources of the corpus (same filters, each once, sorted):
source-side text with no French reference, which the verifier can translate into more
distillation data for the drafter (the drafter learns the verifier, not the references).

Catalogs differ between machines (the installed packages decide), so the corpus is not
the project's default; ``OUT/corpus_stats.txt`` records what was read and kept.

Usage: python data/make_gettext_corpus.py --out-dir DIR [--lang fr --test 1000 --valid 1000 --seed 1
       --extra-sources]
"""

import argparse
import collections
import glob
import os
import random
import re
import struct
import tempfile
from typing import Dict, Iterator, List, Tuple

MO_MAGIC = 0x950412DE
SPACE = re.compile(r"\s+")
LETTER = re.compile(r"[^\W\d_]")


def read_mo(data: bytes) -> Iterator[Tuple[bytes, bytes]]:
    """The (msgid, msgstr) byte strings of a compiled gettext catalog, as stored: a
    context is prefixed with ``\\x04``, plural msgids and forms are joined by ``\\x00``."""
    for order in ("<", ">"):
        (magic,) = struct.unpack(order + "I", data[:4])
        if magic == MO_MAGIC:
            break
    else:
        raise ValueError("not a gettext .mo file (bad magic number)")
    count, originals, translations = struct.unpack(order + "3I", data[8:20])
    for i in range(count):
        length, offset = struct.unpack(order + "2I", data[originals + 8 * i: originals + 8 * i + 8])
        msgid = data[offset: offset + length]
        length, offset = struct.unpack(order + "2I", data[translations + 8 * i: translations + 8 * i + 8])
        yield msgid, data[offset: offset + length]


def catalog_charset(entries: Dict[bytes, bytes]) -> str:
    """The charset the catalog's header declares (UTF-8 when it names none)."""
    header = entries.get(b"", b"").decode("ascii", errors="replace")
    match = re.search(r"charset=([\w-]+)", header)
    return match.group(1) if match and match.group(1).upper() != "CHARSET" else "utf-8"


def one_line(text: str) -> str:
    """A message on one line: line breaks, tabs and runs of spaces become one space."""
    return SPACE.sub(" ", text).strip()


def catalog_pairs(data: bytes) -> List[Tuple[str, str]]:
    """The (English, translation) pairs of one catalog: header and untranslated entries
    left out, contexts dropped, plural entries as two pairs, each message on one line."""
    entries = dict(read_mo(data))
    charset = catalog_charset(entries)
    pairs = []
    for msgid, msgstr in entries.items():
        if not msgid or not msgstr:
            continue
        if b"\x04" in msgid:
            msgid = msgid.split(b"\x04", 1)[1]
        sources = msgid.decode(charset, errors="replace").split("\x00")
        forms = msgstr.decode(charset, errors="replace").split("\x00")
        if len(sources) == 2:  # singular, plural: the first form and the last (the plural)
            candidates = [(sources[0], forms[0]), (sources[1], forms[-1])]
        else:
            candidates = [(sources[0], forms[0])]
        for source, target in candidates:
            source, target = one_line(source), one_line(target)
            if source and target:
                pairs.append((source, target))
    return pairs


def keep_pair(source: str, target: str, max_words: int, max_ratio: float) -> bool:
    """Whether a pair passes the corpus filters (see the module docstring)."""
    if not LETTER.search(source):
        return False
    n, m = len(source.split()), len(target.split())
    if n > max_words or m > max_words:
        return False
    return max(n, m) <= max_ratio * min(n, m) or max(n, m) <= 3


def most_frequent_translation(pairs: List[Tuple[str, str]]) -> Dict[str, str]:
    """One translation per source: the most frequent one, ties broken by the smallest string."""
    counts: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for source, target in pairs:
        counts[source][target] += 1
    return {s: min(c.items(), key=lambda item: (-item[1], item[0]))[0] for s, c in counts.items()}


def split_sources(sources: List[str], test: int, valid: int, seed: int) -> Dict[str, List[str]]:
    """The seeded split of the (unique) sources: test first, then valid, the rest train."""
    order = sorted(sources)
    random.Random(seed).shuffle(order)
    if len(order) < test + valid + 1:
        raise ValueError(f"{len(order)} unique sources cannot fill a test set of {test} and a validation set "
                         f"of {valid}: lower --test/--valid or install more translated packages")
    return {"test": order[:test], "valid": order[test: test + valid], "train": order[test + valid:]}


def extra_sources(locale_dir: str, lang: str, known: set, max_words: int) -> List[str]:
    """English msgids of the other languages' catalogs that are not in ``known`` (sorted, each once)."""
    found = set()
    for path in sorted(glob.glob(os.path.join(locale_dir, "*", "LC_MESSAGES", "*.mo"))):
        if os.path.basename(os.path.dirname(os.path.dirname(path))) == lang:
            continue
        with open(path, "rb") as f:
            try:
                pairs = catalog_pairs(f.read())
            except (ValueError, LookupError, struct.error):  # a damaged catalog or an unknown charset
                continue
        found.update(s for s, t in pairs if s not in known and keep_pair(s, s, max_words, 1.0))
    return sorted(found)


def write_lines(path: str, lines: List[str]) -> None:
    """Write ``lines`` to ``path`` atomically (a temporary file moved into place)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--lang", default="fr", help="target language of the catalogs (default: fr)")
    parser.add_argument("--locale-dir", default="/usr/share/locale")
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--valid", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-words", type=int, default=60)
    parser.add_argument("--max-ratio", type=float, default=3.0)
    parser.add_argument("--extra-sources", action="store_true",
                        help="also write OUT/extra.en: other languages' English msgids not in the corpus")
    args = parser.parse_args()

    files = sorted(glob.glob(os.path.join(args.locale_dir, args.lang, "LC_MESSAGES", "*.mo")))
    if not files:
        raise SystemExit(f"error: no catalogs in {args.locale_dir}/{args.lang}/LC_MESSAGES: install translated "
                         f"packages (or pick another --lang)")
    read, kept = 0, []
    for path in files:
        with open(path, "rb") as f:
            pairs = catalog_pairs(f.read())
        read += len(pairs)
        kept.extend(p for p in pairs if keep_pair(*p, args.max_words, args.max_ratio))
    translation = most_frequent_translation(kept)
    splits = split_sources(list(translation), args.test, args.valid, args.seed)
    os.makedirs(args.out_dir, exist_ok=True)
    for name, sources in splits.items():
        write_lines(os.path.join(args.out_dir, f"{name}.en"), sources)
        write_lines(os.path.join(args.out_dir, f"{name}.{args.lang}"), [translation[s] for s in sources])
    stats = (f"catalogs\t{len(files)}\npairs read\t{read}\npairs kept by the filters\t{len(kept)}\n"
             f"unique sources\t{len(translation)}\n" + "".join(f"{n}\t{len(s)}\n" for n, s in splits.items()))
    if args.extra_sources:
        extra = extra_sources(args.locale_dir, args.lang, set(translation), args.max_words)
        write_lines(os.path.join(args.out_dir, "extra.en"), extra)
        stats += f"extra sources\t{len(extra)}\n"
    write_lines(os.path.join(args.out_dir, "corpus_stats.txt"), stats.rstrip("\n").split("\n"))
    print(stats, end="")


if __name__ == "__main__":
    main()
