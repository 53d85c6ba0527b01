#!/usr/bin/env python3
"""Download a WMT corpus and lay it out as RAW/{train,valid,test}.{L1,L2}.

Pairs (the same sources as fairseq's examples/translation/prepare-wmt14en2de.sh --icml17,
and the usual WMT16 EN-RO setup):

  wmt14_en_de  train  europarl-v7 + commoncrawl + news-commentary-v9   (~4.5M pairs)
               valid  newstest2013              test  newstest2014 (full, 3003 sentences)
  wmt16_en_ro  train  europarl-v8 + SETIMES2                           (~610k pairs)
               valid  newsdev2016               test  newstest2016 (1999 sentences)

One corpus serves both directions (en->de and de->en read the same files).

Everything the script fetches is data: ``BASES`` (where) and ``PAIRS`` (which archives,
which members). Point it elsewhere with ``--base NAME=URL`` (one base) or ``--mirror URL``
(every archive fetched as URL/<archive name>); file:// URLs work.

Resumable: an archive already in DOWNLOADS is not fetched again; a download goes to
NAME.part (continued with an HTTP Range request when the server allows it) and is renamed
when complete; members already extracted are kept; each RAW file is written to .tmp and
renamed, and one that exists is not rewritten. Archives: .tgz/.tar.gz/.tar, .gz, .zip;
SGML test sets (.sgm) are converted to plain text (the text of the <seg> elements).
Line breaks inside a sentence (\\r, U+2028, U+2029, U+0085) become spaces, so that every
tool downstream sees exactly one sentence per line.

usage: download_wmt.py --pair wmt14_en_de --raw RAW [--downloads DIR] [--mirror URL]
                       [--base NAME=URL ...] [--dry-run]
"""
import argparse
import fnmatch
import gzip
import os
import re
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile

BASES = {
    "statmt": "http://statmt.org/",
    "statmt_data": "http://data.statmt.org/",
    "opus": "https://object.pouta.csc.fi/",
}

# archive name -> (base, path under the base)
ARCHIVES = {
    # WMT14 EN-DE (fairseq prepare-wmt14en2de.sh --icml17; valid = newstest2013 from dev.tgz)
    "training-parallel-europarl-v7.tgz": ("statmt", "wmt13/training-parallel-europarl-v7.tgz"),
    "training-parallel-commoncrawl.tgz": ("statmt", "wmt13/training-parallel-commoncrawl.tgz"),
    "training-parallel-nc-v9.tgz": ("statmt", "wmt14/training-parallel-nc-v9.tgz"),
    "wmt14-dev.tgz": ("statmt", "wmt14/dev.tgz"),
    "test-full.tgz": ("statmt", "wmt14/test-full.tgz"),
    # WMT16 EN-RO
    "training-parallel-ep-v8.tgz": ("statmt_data", "wmt16/translation-task/training-parallel-ep-v8.tgz"),
    "SETIMES2.en-ro.txt.zip": ("opus", "OPUS-SETIMES/v2/moses/en-ro.txt.zip"),
    "dev-romanian-updated.tgz": ("statmt_data", "wmt16/translation-task/dev-romanian-updated.tgz"),
    "wmt16-test.tgz": ("statmt_data", "wmt16/translation-task/test.tgz"),
}

# split -> list of corpora; a corpus is an archive and, per language, the member to read
# (an fnmatch pattern, matched against the member's path or its base name).
PAIRS = {
    "wmt14_en_de": {
        "langs": ("en", "de"),
        "train": [
            ("training-parallel-europarl-v7.tgz", {"en": "*europarl-v7.de-en.en", "de": "*europarl-v7.de-en.de"}),
            ("training-parallel-commoncrawl.tgz", {"en": "*commoncrawl.de-en.en", "de": "*commoncrawl.de-en.de"}),
            ("training-parallel-nc-v9.tgz", {"en": "*news-commentary-v9.de-en.en", "de": "*news-commentary-v9.de-en.de"}),
        ],
        "valid": [("wmt14-dev.tgz", {"en": "*newstest2013.en", "de": "*newstest2013.de"})],
        "test": [("test-full.tgz", {"en": "*newstest2014-deen-src.en.sgm", "de": "*newstest2014-deen-ref.de.sgm"})],
    },
    "wmt16_en_ro": {
        "langs": ("en", "ro"),
        "train": [
            ("training-parallel-ep-v8.tgz", {"en": "*europarl-v8.ro-en.en", "ro": "*europarl-v8.ro-en.ro"}),
            ("SETIMES2.en-ro.txt.zip", {"en": "*SETIMES*.en-ro.en", "ro": "*SETIMES*.en-ro.ro"}),
        ],
        "valid": [("dev-romanian-updated.tgz", {"en": "*newsdev2016-enro-src.en.sgm", "ro": "*newsdev2016-enro-ref.ro.sgm"})],
        "test": [("wmt16-test.tgz", {"en": "*newstest2016-enro-src.en.sgm", "ro": "*newstest2016-enro-ref.ro.sgm"})],
    },
}
SPLITS = ("valid", "test", "train")  # train last: its files are the largest

LINE_BREAKS = re.compile("[\r\u2028\u2029\u0085]")
SEG = re.compile(r"<seg[^>]*>(.*)</seg>", re.IGNORECASE)


def say(msg):
    print(f"[download] {msg}", file=sys.stderr, flush=True)


def archive_url(name, bases, mirror=None):
    if mirror:
        return mirror.rstrip("/") + "/" + urllib.parse.quote(name)
    base, path = ARCHIVES[name]
    return bases[base].rstrip("/") + "/" + path


def fetch(url, dest, retries=3, timeout=60):
    """Download url to dest (via dest.part); skip when dest exists."""
    if os.path.exists(dest):
        say(f"{os.path.basename(dest)}: already downloaded")
        return
    part = dest + ".part"
    for attempt in range(1, retries + 1):
        have = os.path.getsize(part) if os.path.exists(part) else 0
        req = urllib.request.Request(url, headers={"User-Agent": "fairseq-specdec-recipe"})
        if have:
            req.add_header("Range", f"bytes={have}-")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                resumed = have > 0 and getattr(resp, "status", None) == 206
                mode = "ab" if resumed else "wb"
                total = resp.headers.get("Content-Length")
                say(f"{url} -> {dest}" + (f" (resuming at {have} bytes)" if resumed else "")
                    + (f" [{int(total) / 1e6:.1f} MB]" if total else ""))
                done, next_report = (have if resumed else 0), 0
                with open(part, mode) as out:
                    while True:
                        chunk = resp.read(1 << 20)
                        if not chunk:
                            break
                        out.write(chunk)
                        done += len(chunk)
                        if done >= next_report:
                            say(f"  {done / 1e6:.0f} MB")
                            next_report = done + (100 << 20)
                if total is not None and int(total) != done - (have if resumed else 0):
                    raise IOError(f"incomplete download: {done} bytes")
            os.replace(part, dest)
            return
        except (urllib.error.URLError, IOError, TimeoutError) as err:
            if isinstance(err, urllib.error.HTTPError) and err.code == 416:
                os.remove(part)  # the .part was already complete or is stale: start again
            if attempt == retries:
                raise SystemExit(f"error: cannot download {url}: {err}")
            say(f"  {err}; retrying ({attempt}/{retries})")
            time.sleep(2 * attempt)


def _matches(member, pattern):
    return fnmatch.fnmatch(member, pattern) or fnmatch.fnmatch(os.path.basename(member), pattern)


def extract(archive, patterns, out_dir):
    """Extract the members matching ``patterns`` (lang -> pattern) into out_dir.

    Returns lang -> extracted path. Members already extracted are not read again.
    """
    os.makedirs(out_dir, exist_ok=True)
    wanted = {lang: os.path.join(out_dir, lang + "." + os.path.basename(p).replace("*", "")) for lang, p in patterns.items()}
    missing = {lang: p for lang, p in patterns.items() if not os.path.exists(wanted[lang])}
    if not missing:
        return wanted

    def save(lang, stream):
        tmp = wanted[lang] + ".tmp"
        with open(tmp, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
        os.replace(tmp, wanted[lang])
        del missing[lang]

    name = os.path.basename(archive)
    say(f"extracting {sorted(missing.values())} from {name}")
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                for lang, pattern in list(missing.items()):
                    if _matches(member, pattern):
                        with zf.open(member) as stream:
                            save(lang, stream)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:  # streams through the archive once
            for member in tf:
                if not member.isfile():
                    continue
                for lang, pattern in list(missing.items()):
                    if _matches(member.name, pattern):
                        save(lang, tf.extractfile(member))
                if not missing:
                    break
    elif name.endswith(".gz"):  # one compressed file: it is the member for every pattern it matches
        inner = name[:-3]
        for lang, pattern in list(missing.items()):
            if _matches(inner, pattern):
                with gzip.open(archive, "rb") as stream:
                    save(lang, stream)
    else:  # a plain file
        for lang, pattern in list(missing.items()):
            if _matches(name, pattern):
                with open(archive, "rb") as stream:
                    save(lang, stream)
    if missing:
        raise SystemExit(f"error: {name} has no member matching {sorted(missing.values())}")
    return wanted


def read_lines(path):
    """Yield the sentences of a text or SGML file, one per line, with no line break inside."""
    sgm = path.endswith(".sgm")
    with open(path, "rb") as f:  # binary: split on \n only, whatever else the text holds
        for raw_line in f:
            line = raw_line.decode("utf-8", errors="replace").rstrip("\n")
            if sgm:
                m = SEG.search(line)
                if not m:
                    continue
                line = m.group(1)
            yield LINE_BREAKS.sub(" ", line).strip()


def write_split(raw, split, langs, corpora):
    """Concatenate the corpora of one split into RAW/split.L for each language."""
    outs = {lang: os.path.join(raw, f"{split}.{lang}") for lang in langs}
    if all(os.path.exists(p) for p in outs.values()):
        say(f"{split}: already written")
        return
    tmps = {lang: open(outs[lang] + ".tmp", "w", encoding="utf-8") for lang in langs}
    total, complete = 0, False
    try:
        for paths in corpora:
            counts = {}
            for lang in langs:
                n = 0
                for line in read_lines(paths[lang]):
                    tmps[lang].write(line + "\n")
                    n += 1
                counts[lang] = n
            if len(set(counts.values())) != 1:
                raise SystemExit(f"error: {split}: the sides have different line counts {counts} "
                                 f"({[paths[l] for l in langs]})")
            total += counts[langs[0]]
        complete = True
    finally:
        for f in tmps.values():
            f.close()
        if not complete:
            for lang in langs:
                os.remove(outs[lang] + ".tmp")
    for lang in langs:
        os.replace(outs[lang] + ".tmp", outs[lang])
    say(f"{split}: {total} sentence pairs -> {', '.join(outs.values())}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", required=True, choices=sorted(PAIRS))
    parser.add_argument("--raw", required=True, help="output folder: RAW/{train,valid,test}.{L1,L2}")
    parser.add_argument("--downloads", help="where archives and extracted members go (default: RAW/../downloads)")
    parser.add_argument("--mirror", help="fetch every archive as MIRROR/<archive name> (http://, https://, file://)")
    parser.add_argument("--base", action="append", default=[], metavar="NAME=URL",
                        help=f"replace one URL base ({', '.join(f'{k}={v}' for k, v in BASES.items())})")
    parser.add_argument("--dry-run", action="store_true", help="print the URLs and outputs, fetch nothing")
    args = parser.parse_args(argv)

    bases = dict(BASES)
    for item in args.base:
        name, sep, url = item.partition("=")
        if not sep or name not in bases:
            parser.error(f"--base {item!r}: expected NAME=URL with NAME in {sorted(bases)}")
        bases[name] = url
    spec = PAIRS[args.pair]
    langs = spec["langs"]
    raw = os.path.abspath(args.raw)
    downloads = os.path.abspath(args.downloads or os.path.join(raw, os.pardir, "downloads"))
    archives = list(dict.fromkeys(name for split in SPLITS for name, _ in spec[split]))

    if args.dry_run:
        for name in archives:
            print(f"fetch {archive_url(name, bases, args.mirror)} -> {os.path.join(downloads, name)}")
        for split in SPLITS:
            print(f"write {', '.join(os.path.join(raw, f'{split}.{lang}') for lang in langs)}")
        return

    if all(os.path.exists(os.path.join(raw, f"{split}.{lang}")) for split in SPLITS for lang in langs):
        say(f"{raw}: all splits present, nothing to do")
        return
    os.makedirs(downloads, exist_ok=True)
    os.makedirs(raw, exist_ok=True)
    for split in SPLITS:
        if all(os.path.exists(os.path.join(raw, f"{split}.{lang}")) for lang in langs):
            say(f"{split}: already written")
            continue
        corpora = []
        for name, patterns in spec[split]:
            path = os.path.join(downloads, name)
            fetch(archive_url(name, bases, args.mirror), path)
            corpora.append(extract(path, patterns, os.path.join(downloads, "extracted", name)))
        write_split(raw, split, langs, corpora)


if __name__ == "__main__":
    main()
