"""Tests for data/make_demo_corpus.py (synthetic en -> pseudo-German corpus)."""

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "data" / "make_demo_corpus.py"


def _load():
    name = "_specdec_make_demo_corpus"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


mdc = _load()


@pytest.fixture(scope="module")
def pairs():
    return mdc.generate_pairs(2000, 1)


def _read(path):
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def test_same_seed_same_output_different_seed_different_output():
    a = mdc.generate_pairs(300, 5)
    assert a == mdc.generate_pairs(300, 5)
    b = mdc.generate_pairs(300, 6)
    assert a != b
    assert len({p[0] for p in a} & {p[0] for p in b}) < 150


def test_output_does_not_depend_on_hash_seed():
    code = ("import hashlib, importlib.util, sys; "
            f"spec = importlib.util.spec_from_file_location('m', {str(SCRIPT)!r}); "
            "m = importlib.util.module_from_spec(spec); sys.modules['m'] = m; spec.loader.exec_module(m); "
            "print(hashlib.sha256(repr(m.generate_pairs(400, 3)).encode()).hexdigest())")
    want = hashlib.sha256(repr(mdc.generate_pairs(400, 3)).encode()).hexdigest()
    for hash_seed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True)
        assert out.stdout.strip() == want


def test_sentences_are_well_formed(pairs):
    assert len(pairs) == 2000
    assert len({en for en, _ in pairs}) == 2000
    en_lens, de_lens = [], []
    for en, de in pairs:
        for s in (en, de):
            assert s and s == s.strip() and "\n" not in s and "  " not in s
            assert s.isascii() and s[0].isupper()
            assert s[-1] in ".?" and s[-2].isalpha()
            assert 4 <= len(s.split()) <= 30
        assert en[-1] == de[-1]
        en_lens.append(len(en.split()))
        de_lens.append(len(de.split()))
    assert 9 <= sum(en_lens) / len(en_lens) <= 15
    assert 9 <= sum(de_lens) / len(de_lens) <= 15
    assert max(en_lens) >= 20 and min(en_lens) <= 5
    assert sum(en.endswith("?") for en, _ in pairs) > 100


def test_reordering(pairs):
    # verb final in subordinate clauses: "..., weil der Hund den Mann gesehen hat."
    sub_final = re.compile(r", (weil|da|dass|wenn|als|obwohl|bevor|waehrend|falls) [^,]* "
                           r"(ge\w+t|ge\w+en) (hat|haben|ist|sind)[.,?]")
    assert sum(bool(sub_final.search(de)) for _, de in pairs) > 20
    # perfect: auxiliary in second position, participle at the end ("Der Mann hat ... gesehen.")
    perfect = re.compile(r"^[A-Z][^,]* (habe|hast|hat|haben|bin|bist|ist|sind) [^,]+ ge[a-z]+(t|en)[.,]")
    assert sum(bool(perfect.search(de)) for _, de in pairs) > 50
    saw = [de for en, de in pairs if " saw " in f" {en.lower()}"]
    assert any(re.search(r"\b(habe|hast|hat|haben) [^,]* gesehen[.,]", de) for de in saw)
    # fronted subordinate clause -> finite verb directly after the comma (verb second)
    fronted = [de for en, de in pairs if en.startswith(("Because ", "Although ", "If ", "When "))
               and not en.endswith("?")]
    assert fronted
    not_verb = re.compile(r"(der|die|das|ein\w*|kein\w*|dies\w*|mein\w*|dein\w*|sein\w*|ihr\w*|unser\w*"
                          r"|ich|du|er|sie|es|wir)$")
    for de in fronted:
        first = de.split(", ")[1].split()[0]  # first word of the main clause
        assert first.islower() and not not_verb.match(first), de
    # questions are verb first in German
    assert any(en.startswith("Did ") and de.split()[0] in ("Hat", "Haben", "Ist", "Sind") for en, de in pairs)


def test_compounding(pairs):
    nouns = {}  # German singular noun -> English noun
    for noun in mdc.LEX.NOUNS:
        for v in noun.variants:
            nouns[v.sg] = noun.en
    compounds = {a + b.lower(): f"{nouns[a]} {nouns[b]}" for a in nouns for b in nouns if a != b}
    found = [(en, de, w) for en, de in pairs for w in re.findall(r"[A-Z]\w+", de) if w in compounds]
    assert len(found) > 20
    assert sum(compounds[w] in en.lower() for en, _, w in found) > 20  # "city bank" -> "Stadtbank"


def test_ambiguity(pairs):
    car = [de for en, de in pairs if re.search(r"\bcars?\b", en) and not re.search(r"\bcar \w", en)]
    assert any(re.search(r"\bAutos?\b", de) for de in car)
    assert any(re.search(r"\bWagen\b", de) for de in car)
    because = [de for en, de in pairs if " because " in en]
    assert any(", weil " in de for de in because) and any(", da " in de for de in because)
    you = [de for en, de in pairs if re.match(r"^You \w+ ", en)]
    assert {de.split()[0] for de in you} >= {"Du", "Sie"}


def test_write_corpus_splits(tmp_path):
    sizes = {"train": 2000, "valid": 200, "test": 200}
    result = mdc.write_corpus(tmp_path, sizes, seed=4, verbose=False)
    assert sorted(os.listdir(tmp_path)) == sorted(f"{s}.{lang}" for s in sizes for lang in ("en", "de"))
    sources = {}
    for split, n in sizes.items():
        en, de = _read(tmp_path / f"{split}.en"), _read(tmp_path / f"{split}.de")
        assert len(en) == len(de) == n
        assert all(line.strip() for line in en + de)
        assert list(zip(en, de)) == result[split]
        sources[split] = set(en)
    assert not sources["train"] & sources["valid"]
    assert not sources["train"] & sources["test"]
    assert not sources["valid"] & sources["test"]
    # held-out splits do not depend on the train size
    mdc.write_corpus(tmp_path / "small", {"train": 100, "valid": 200, "test": 200}, seed=4, verbose=False)
    for name in ("valid.en", "valid.de", "test.en", "test.de"):
        assert (tmp_path / "small" / name).read_bytes() == (tmp_path / name).read_bytes()


def test_cli_writes_six_files(tmp_path):
    out = tmp_path / "corpus"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out-dir", str(out), "--train", "300",
                           "--valid", "40", "--test", "50", "--seed", "2"],
                          capture_output=True, text=True, check=True)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3 and [line.split(":")[0] for line in lines] == ["valid", "test", "train"]
    want = sorted(f"{s}.{lang}" for s in ("train", "valid", "test") for lang in ("en", "de"))
    assert sorted(os.listdir(out)) == want
    for split, n in (("train", 300), ("valid", 40), ("test", 50)):
        assert len(_read(out / f"{split}.en")) == len(_read(out / f"{split}.de")) == n
    pairs = mdc.generate_pairs(390, 2)
    assert _read(out / "valid.en") == [en for en, _ in pairs[:40]]
