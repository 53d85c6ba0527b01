"""data/make_gettext_corpus.py: the real-text corpus from gettext catalogs, on catalogs
compiled here by hand (contexts, plural forms, charsets, filters, duplicates, the split),
and on this machine's own catalogs when it has French ones."""
import glob
import importlib.util
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "data" / "make_gettext_corpus.py"
spec = importlib.util.spec_from_file_location("_specdec_make_gettext_corpus", SCRIPT)
corpus = importlib.util.module_from_spec(spec)
spec.loader.exec_module(corpus)


def compile_mo(entries, charset="UTF-8", order="<") -> bytes:
    """A .mo catalog (GNU format, no hash table) of (msgid, msgstr) byte strings; the header
    entry declares ``charset``."""
    header = f"Content-Type: text/plain; charset={charset}\n".encode("ascii")
    items = sorted([(b"", header), *entries])
    n = len(items)
    originals, translations = 28, 28 + 8 * n
    data_start = 28 + 16 * n
    blob, orig_table, trans_table = b"", b"", b""
    for key, _ in items:
        orig_table += struct.pack(order + "2I", len(key), data_start + len(blob))
        blob += key + b"\0"
    for _, value in items:
        trans_table += struct.pack(order + "2I", len(value), data_start + len(blob))
        blob += value + b"\0"
    head = struct.pack(order + "7I", corpus.MO_MAGIC, 0, n, originals, translations, 0, 0)
    return head + orig_table + trans_table + blob


def test_reads_contexts_plurals_and_the_declared_charset():
    mo = compile_mo([
        (b"Open", b"Ouvrir"),
        (b"menu\x04_File", b"_Fichier"),  # a context: dropped from the key, markup kept
        (b"%d file\x00%d files", b"%d fichier\x00%d fichiers"),  # plural: two pairs
        (b"Untranslated", b""),
        (b"Line one\nline two\t<b>bold</b>", "Ligne un\nligne deux\t<b>gras</b>".encode("utf-8")),
    ])
    pairs = sorted(corpus.catalog_pairs(mo))
    assert pairs == sorted([("Open", "Ouvrir"), ("_File", "_Fichier"), ("%d file", "%d fichier"),
                            ("%d files", "%d fichiers"),
                            ("Line one line two <b>bold</b>", "Ligne un ligne deux <b>gras</b>")])
    latin = compile_mo([(b"Error", "Erreur \xe9".encode("latin-1"))], charset="ISO-8859-1", order=">")
    assert corpus.catalog_pairs(latin) == [("Error", "Erreur \xe9")]


def test_not_a_catalog_is_refused():
    with pytest.raises(ValueError, match="not a gettext .mo file"):
        list(corpus.read_mo(b"\0" * 32))


@pytest.mark.parametrize("source, target, kept", [
    ("Open the file", "Ouvrir le fichier", True),
    ("%s: %s", "%s : %s", True),  # a placeholder's letter counts: French typography differs
    ("12:30 - 5", "12 h 30 - 5", False),  # no letter: nothing to translate
    ("one two three four", "un", False),  # 4 words against 1: ratio over 3
    ("Soria", "naga de Soria", True),  # short messages may differ more
    (" ".join(["word"] * 61), " ".join(["mot"] * 61), False),  # too long
])
def test_filters(source, target, kept):
    assert corpus.keep_pair(source, target, max_words=60, max_ratio=3.0) is kept


def test_a_source_keeps_its_most_frequent_translation():
    pairs = [("Close", "Fermer"), ("Close", "Fermer"), ("Close", "Clore"), ("Quit", "Quitter"), ("Quit", "Sortir")]
    assert corpus.most_frequent_translation(pairs) == {"Close": "Fermer", "Quit": "Quitter"}  # tie: smallest


def test_the_split_is_seeded_disjoint_and_complete():
    sources = [f"message {i}" for i in range(50)]
    a = corpus.split_sources(list(reversed(sources)), test=10, valid=5, seed=3)
    assert a == corpus.split_sources(sources, test=10, valid=5, seed=3)  # the input order does not matter
    assert a != corpus.split_sources(sources, test=10, valid=5, seed=4)
    assert (len(a["test"]), len(a["valid"]), len(a["train"])) == (10, 5, 35)
    assert sorted(a["test"] + a["valid"] + a["train"]) == sorted(sources)
    with pytest.raises(ValueError, match="cannot fill a test set"):
        corpus.split_sources(sources, test=45, valid=5, seed=3)


def test_the_command_on_a_locale_tree(tmp_path):
    locale = tmp_path / "locale"
    messages = [(f"Message number {i}".encode(), f"Message numéro {i}".encode()) for i in range(30)]
    for lang, package, entries in (("fr", "a", messages[:20]), ("fr", "b", messages[15:] + [(b"42", b"42")]),
                                   ("es", "a", [(b"Only in Spanish", b"Solo en espanol"), messages[0]])):
        folder = locale / lang / "LC_MESSAGES"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{package}.mo").write_bytes(compile_mo(entries))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out-dir", str(out), "--locale-dir", str(locale),
                           "--test", "5", "--valid", "5", "--extra-sources"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = {name: (out / name).read_text(encoding="utf-8").splitlines()
             for name in ("train.en", "train.fr", "valid.en", "test.en", "test.fr", "extra.en")}
    assert len(lines["train.en"]) == len(lines["train.fr"]) == 20 and len(lines["test.en"]) == 5
    assert len(set(lines["train.en"] + lines["valid.en"] + lines["test.en"])) == 30  # each source once
    for en, fr in zip(lines["test.en"], lines["test.fr"]):
        assert fr == en.replace("number", "numéro")
    assert lines["extra.en"] == ["Only in Spanish"]  # the Spanish catalog's msgid the French ones lack
    assert "unique sources\t30" in (out / "corpus_stats.txt").read_text()
    missing = subprocess.run([sys.executable, str(SCRIPT), "--out-dir", str(out), "--locale-dir", str(locale),
                              "--lang", "xx"], capture_output=True, text=True)
    assert missing.returncode != 0 and "no catalogs in" in missing.stderr


@pytest.mark.skipif(len(glob.glob("/usr/share/locale/fr/LC_MESSAGES/*.mo")) < 20,
                    reason="this machine has few French gettext catalogs")
def test_this_machines_french_catalogs_give_tens_of_thousands_of_pairs(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out-dir", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    train = (tmp_path / "train.en").read_text(encoding="utf-8").splitlines()
    assert len(train) > 10_000 and len((tmp_path / "test.fr").read_text(encoding="utf-8").splitlines()) == 1000
    assert any("%s" in line for line in train)  # placeholders kept
