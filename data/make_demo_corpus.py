#!/usr/bin/env python3
"""Deterministic synthetic parallel corpus: English -> pseudo-German (en, de).

The demo of fairseq-specdec trains a small translation model on this corpus,
so nothing has to be downloaded.  Sentences come from a small random grammar
over the lexicon in ``demo_lexicon.py`` (a few hundred English words).  The
German side follows real German rules closely enough that a model has
structure to learn:

* noun phrases: articles der/die/das, ein, kein, dies-, possessives, declined
  for gender, number and case (nominative subject, accusative / dative
  objects, prepositions governing dative or accusative, contractions such as
  ``im``, ``zum``); adjectives take weak / mixed / strong endings.
* verbs agree with person and number, with stem-changing and irregular
  forms; past tense becomes the perfect (``hat ... gesehen``, ``ist ...
  gegangen``), future ``wird ... sehen``, modals ``kann/muss/will ... sehen``
  ("must not" -> ``darf nicht``); separable verbs split (``ruft ... an``).
* word order: verb second in main clauses (a fronted time adverb or a
  fronted subordinate clause pushes the subject behind the verb), verb first
  in yes/no questions, verb final in subordinate clauses (because, although,
  if, when, before, while, that) and subject relative clauses; participles
  and infinitives go to the end of the clause; ``nicht`` / ``kein`` negation.
* compounds: English noun-noun compounds ("city bank") become one word
  (``Stadtbank``).
* ambiguity: some English words have two translations drawn 70/30 (car ->
  Auto/Wagen, you -> du/Sie, because -> weil/da, quickly -> schnell/rasch,
  ...), and a time adverb at the end of the English sentence is moved to the
  German front 30% of the time.  The target is not a function of the source.

All randomness comes from one ``random.Random(seed)``; the lexicon is held in
lists, so the output is identical on every machine for the same arguments.
Source sentences are unique over the whole stream, which is cut into the
splits (held-out splits first), so the splits are disjoint.  Each file is
written to a temporary file in the output directory and moved into place
with os.replace, so a file that exists is always complete.

Usage: python data/make_demo_corpus.py --out-dir DIR [--train 40000
       --valid 1000 --test 1000 --seed 1]
"""

import argparse
import importlib.util
import os
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


def _load_lexicon():
    name = "_specdec_demo_lexicon"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("demo_lexicon.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


LEX = _load_lexicon()
PERSON_INDEX = {"1sg": 0, "2sg": 1, "3sg": 2, "1pl": 3, "3pl": 4, "2pol": 4}
DEF = {"nom": dict(m="der", f="die", n="das", pl="die"), "acc": dict(m="den", f="die", n="das", pl="die"),
       "dat": dict(m="dem", f="der", n="dem", pl="den")}
STRONG = {"nom": dict(m="er", f="e", n="es", pl="e"), "acc": dict(m="en", f="e", n="es", pl="e"),
          "dat": dict(m="em", f="er", n="em", pl="en")}  # dies- endings = strong adjective endings
EIN = {"nom": dict(m="", f="e", n="", pl="e"), "acc": dict(m="en", f="e", n="", pl="e"),
       "dat": dict(m="em", f="er", n="em", pl="en")}
WEAK = {"nom": dict(m="e", f="e", n="e", pl="en"), "acc": dict(m="en", f="e", n="e", pl="en"),
        "dat": dict(m="en", f="en", n="en", pl="en")}
MIXED = {"nom": dict(m="er", f="e", n="es", pl="en"), "acc": dict(m="en", f="e", n="es", pl="en"),
         "dat": dict(m="en", f="en", n="en", pl="en")}
CONTRACT = {("in", "dem"): "im", ("in", "das"): "ins", ("an", "dem"): "am", ("an", "das"): "ans",
            ("zu", "dem"): "zum", ("zu", "der"): "zur", ("von", "dem"): "vom"}
MODAL = {"fut": ("will", "werden"), "can": ("can", "koennen"), "must": ("must", "muessen")}
TENSES = (("pres", 0.36), ("past", 0.3), ("fut", 0.12), ("can", 0.08), ("must", 0.06), ("want", 0.08))
KINDS = (("tr", 0.36), ("intr", 0.14), ("mot", 0.15), ("dat", 0.07), ("ditr", 0.1), ("cop", 0.18))
DETS = (("def", 0.45), ("indef", 0.25), ("poss", 0.2), ("this", 0.1))


_MATCHES = {}


def matching(entries, classes):
    """Lexicon entries (in table order) sharing a class with `classes`; "any" matches all."""
    key = (id(entries), tuple(classes))
    if key not in _MATCHES:
        _MATCHES[key] = [e for e in entries if "any" in classes or "any" in e.classes
                         or any(c in e.classes for c in classes)]
    return _MATCHES[key]


@dataclass
class NP:
    person: str
    noun: object = None  # lexicon Noun (None for pronouns)
    nde: object = None  # chosen German variant
    number: str = "sg"
    det: str = "def"  # def / indef / this / poss / none
    poss: tuple = ("", "")  # (en, German stem) for det == "poss"
    adj: tuple = None  # (en, German attributive stem)
    mod: tuple = None  # compound modifier (en, German stem)
    pron: tuple = None  # row of PRONOUNS
    rel: object = None  # relative Clause


@dataclass
class Clause:
    subj: NP
    kind: str
    verb: object = None  # lexicon Verb (None for the copula)
    vde: object = None
    tense: str = "pres"
    neg: bool = False
    acc: NP = None
    dat: NP = None
    to_form: bool = False  # English "gives X to Y"
    pred: tuple = None  # predicative adjective (en, de)
    manner: tuple = None
    pp: tuple = None  # (en tokens, de tokens)
    time: tuple = None
    time_front: bool = False  # English: time adverb first
    de_time_front: bool = False  # German: time adverb in the front field
    comp: object = None  # that-clause


class Grammar:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.cache = {}  # per-sentence choice of ambiguous translations

    def p(self, prob):
        return self.rng.random() < prob

    def weighted(self, pairs):
        x, acc = self.rng.random() * sum(w for _, w in pairs), 0.0
        for item, w in pairs:
            acc += w
            if x < acc:
                return item
        return pairs[-1][0]

    def variant(self, key, variants):
        """Translation of an ambiguous word, consistent within one sentence."""
        if key not in self.cache:
            self.cache[key] = self.weighted(list(zip(variants, LEX.VARIANT_WEIGHTS[len(variants)])))
        return self.cache[key]

    def word(self, w):
        return self.variant(("w", w.en, w.extra), w.de)

    # ----- noun phrases
    def noun_np(self, classes, dets=DETS, adj_p=0.3):
        noun = self.rng.choice(matching(LEX.NOUNS, classes))
        np = NP("3sg", noun, self.variant(("n", noun.en), noun.variants))
        mass = "mass" in noun.classes
        if not mass and self.p(0.3):
            np.number, np.person = "pl", "3pl"
        np.det = "none" if mass and self.p(0.6) else self.weighted(dets)
        if np.det == "poss":
            en, de = self.rng.choice(LEX.POSSESSIVES)
            np.poss = (en, de.split("/")[self.variant("you", (0, 1))] if en == "your" else de)
        if noun.en in LEX.COMPOUNDS and self.p(0.35):
            mod = self.rng.choice(LEX.COMPOUNDS[noun.en])
            np.mod = (mod.en, self.variant(("n", mod.en), mod.variants).stem)
        if self.p(adj_p):
            a = self.rng.choice(matching(LEX.ADJECTIVES, noun.classes))
            np.adj = (a.en, a.extra or self.word(a))
        return np

    def pronoun(self):
        row = self.rng.choice(LEX.PRONOUNS)
        if row[0] == "you" and self.variant("you", (0, 1)):  # formal "Sie" in 30%
            row = LEX.YOU_FORMAL
        return NP(row[5], pron=row)

    def np(self, classes, pron_p):
        if "person" in classes and self.p(pron_p):
            return self.pronoun()
        return self.noun_np(classes)

    def pp(self, use):
        preps = [w for w in LEX.PREPOSITIONS if w.extra.split()[1] in use]
        prep = self.rng.choice(preps)
        np = self.noun_np(prep.classes, dets=(("def", 0.6), ("indef", 0.2), ("poss", 0.15), ("this", 0.05)),
                          adj_p=0.12)
        de = de_np(np, prep.extra.split()[0])
        if np.det == "def" and (prep.de[0], de[0]) in CONTRACT:
            de = [CONTRACT[(prep.de[0], de[0])]] + de[1:]
        else:
            de = [prep.de[0]] + de
        return [prep.en] + en_np(np), de

    # ----- clauses
    def clause(self, kind=None, tense=None, subj=None, question=False, extras=True):
        kind = kind or self.weighted(KINDS)
        tense = tense or self.weighted(TENSES)
        verbs = [v for v in LEX.VERBS if v.kind == kind]
        verb = self.rng.choice(verbs) if verbs else None
        c = Clause(subj=None, kind=kind, verb=verb, tense=tense, neg=not question and self.p(0.15))
        c.subj = subj or self.np(verb.subj if verb else ("person", "any"), pron_p=0.25)
        if verb:
            c.vde = self.variant(("v", verb.en[0]), verb.variants)
        if kind == "cop":
            subj_classes = c.subj.noun.classes if c.subj.noun else ("person",)
            a = self.rng.choice(matching(LEX.ADJECTIVES, subj_classes))
            c.pred = (a.en, self.word(a))
        elif kind in ("tr", "dat"):
            obj = self.np(verb.obj, pron_p=0.15)
            c.acc, c.dat = (obj, None) if kind == "tr" else (None, obj)
        elif kind == "ditr":
            c.dat, c.acc = self.np(("person",), pron_p=0.2), self.noun_np(verb.obj)
            c.to_form = self.p(0.4)
        if not extras:
            return c
        if kind not in ("cop", "say") and self.p(0.12):
            w = self.rng.choice(LEX.MANNER_ADVERBS)
            c.manner = (w.en, self.word(w))
        if kind != "say" and self.p({"mot": 0.7, "cop": 0.15}.get(kind, 0.4)):
            if kind == "cop":
                c.pp = self.pp(("loc",))
            else:
                c.pp = self.pp(("dir", "any") if kind == "mot" and self.p(0.8) else ("loc", "any"))
        if self.p(0.3):
            w = self.rng.choice(matching(LEX.TIME_ADVERBS, (tense,)))
            c.time = (w.en, self.word(w))
            c.time_front = not question and self.p(0.25)
            c.de_time_front = c.time_front or self.p(0.3)
        return c

    def relative(self, head):
        rel = self.clause(kind=self.weighted((("tr", 0.5), ("intr", 0.2), ("mot", 0.1), ("cop", 0.2))),
                          tense=self.weighted((("pres", 0.6), ("past", 0.4))), subj=head, extras=False)
        fits = rel.verb is None or any(c in head.noun.classes for c in rel.verb.subj)
        head.rel = rel if fits else None

    # ----- sentences
    def sentence(self):
        self.cache = {}
        kind = self.weighted((("simple", 0.33), ("yn", 0.1), ("wh", 0.07), ("sub", 0.17), ("front", 0.08),
                              ("that", 0.12), ("coord", 0.13)))
        if kind == "yn":
            c = self.clause(question=True)
            return en_clause(c, "q"), de_clause(c, "q"), "?"
        if kind == "wh":
            c = self.clause(kind=self.weighted(KINDS[:-1]), question=True)
            w = self.rng.choice(LEX.WH_WORDS)
            c.time = None if w.en == "when" else c.time
            return [w.en] + en_clause(c, "q"), [self.word(w)] + de_clause(c, "q"), "?"
        main = self.clause()
        if kind == "simple":
            if main.subj.noun and self.p(0.25):
                self.relative(main.subj)
            return en_clause(main), de_clause(main), "."
        if kind == "coord":
            other = self.clause()
            en_c, de_c = self.weighted(((("and", "und"), 0.6), (("but", "aber"), 0.4)))
            comma = [","] if en_c == "but" else []
            return en_clause(main) + comma + [en_c] + en_clause(other), de_clause(main) + comma + [de_c] + \
                de_clause(other), "."
        if kind == "that":
            main = self.clause(kind="say")
            main.comp = self.clause()
            main.comp.time_front = False
            return en_clause(main), de_clause(main), "."
        conj = self.rng.choice(LEX.CONJUNCTIONS)
        if_when = conj.en in ("if", "when")
        sub = self.clause(tense=self.weighted((("pres", 0.55), ("past", 0.45))) if if_when else None)
        de_conj = ("als" if sub.tense == "past" else "wenn") if conj.en == "when" else self.word(conj)
        sub.time_front = False  # English "because yesterday ..." reads oddly; German keeps it inside anyway
        if kind == "front":
            main.time_front = main.de_time_front = False
            return [conj.en] + en_clause(sub) + [","] + en_clause(main), \
                [de_conj] + de_clause(sub, "sub") + [","] + de_clause(main, "q"), "."
        comma = [","] if conj.en in ("although", "while") or self.p(0.2) else []
        return en_clause(main) + comma + [conj.en] + en_clause(sub), \
            de_clause(main) + [",", de_conj] + de_clause(sub, "sub"), "."


# ----- English rendering
def en_np(np, case="nom"):
    if np.pron:
        return [np.pron[0 if case == "nom" else 1]]
    words = ([np.adj[0]] if np.adj else []) + ([np.mod[0]] if np.mod else [])
    words.append(np.noun.en if np.number == "sg" else np.noun.en_pl)
    det = {"def": "the", "this": "this" if np.number == "sg" else "these", "poss": np.poss[0]}.get(np.det, "")
    if np.det == "indef" and np.number == "sg":
        det = "an" if words[0][0] in "aeiou" else "a"
    out = ([det] if det else []) + words
    if np.rel:
        out += ["who" if "person" in np.noun.classes else "that"] + en_clause(np.rel, "rel")
    return out


def en_verb(c, question):
    """(auxiliary part, main part) of the English verb group."""
    s3 = c.subj.person == "3sg"
    base, third, past = c.verb.en if c.verb else ("be", "is", "was")
    if c.tense in MODAL:
        aux, main = [MODAL[c.tense][0]], [base]
    elif c.verb is None and c.tense in ("pres", "past"):
        forms = ("am", "is", "are") if c.tense == "pres" else ("was", "was", "were")
        aux, main = [forms[0] if c.subj.person == "1sg" else forms[1] if s3 else forms[2]], []
    elif c.tense == "past":
        aux, main = (["did"], [base]) if c.neg or question else ([], [past])
    else:
        lex, lex3, rest = (base, third, []) if c.tense == "pres" else ("want", "wants", ["to", base])
        if c.neg or question:
            aux, main = ["does" if s3 else "do"], [lex] + rest
        else:
            aux, main = [], [lex3 if s3 else lex] + rest
    if c.neg:
        aux = ["cannot"] if aux == ["can"] else aux + ["not"]
    return aux, main


def en_clause(c, mode="decl"):
    aux, main = en_verb(c, question=mode == "q")
    out = []
    if c.kind in ("tr", "dat"):
        obj = c.acc or c.dat
        if obj.pron and main[-1].endswith(" up"):  # "picks him up"
            main = main[:-1] + [main[-1][:-3], obj.pron[1], "up"]
        else:
            out += en_np(obj, "obj")
    elif c.kind == "ditr":
        out += en_np(c.acc, "obj") + ["to"] + en_np(c.dat, "obj") if c.to_form else \
            en_np(c.dat, "obj") + en_np(c.acc, "obj")
    for part in (c.pred, c.manner):
        out += [part[0]] if part else []
    out += c.pp[0] if c.pp else []
    out += [c.time[0]] if c.time and not c.time_front else []
    out += ["that"] + en_clause(c.comp) if c.comp else []
    if mode == "q":
        return aux[:1] + en_np(c.subj) + aux[1:] + main + out
    subj = [] if mode == "rel" else en_np(c.subj)
    front = [c.time[0]] if c.time and c.time_front else []
    return front + subj + aux + main + out


# ----- German rendering
def de_np(np, case, negate=False):
    if np.pron:
        return [np.pron[{"nom": 2, "acc": 3, "dat": 4}[case]]]
    g = np.nde.gender if np.number == "sg" else "pl"
    det = "kein" if negate and np.det in ("indef", "none") else np.det
    if det == "def":
        words, adj_end = [DEF[case][g]], WEAK
    elif det == "this":
        words, adj_end = ["dies" + STRONG[case][g]], WEAK
    elif det in ("none",) or det == "indef" and g == "pl":
        words, adj_end = [], STRONG
    else:
        stem = {"indef": "ein", "kein": "kein", "poss": np.poss[1]}[det]
        words, adj_end = [stem + EIN[case][g]], MIXED
    if np.adj:
        words.append(np.adj[1].removesuffix("e") + adj_end[case][g])  # muede -> mueder
    noun = np.nde.sg if g != "pl" else np.nde.pl
    noun = np.mod[1] + noun.lower() if np.mod else noun
    if g == "pl" and case == "dat" and not noun.endswith(("n", "s")):
        noun += "n"
    words.append(noun)
    if np.rel:
        words += [",", DEF["nom"][g]] + de_clause(np.rel, "rel") + [","]
    return words


def conjugate(v, person):
    i = PERSON_INDEX[person]
    if i >= 3:
        return v.inf
    if v.irr and (i > 0 or len(v.irr) == 3):
        return v.irr[i - 3]
    stem = v.inf[:-2] if v.inf.endswith("en") else v.inf[:-1]
    e = "e" if stem.endswith(("t", "d", "ffn", "chn")) else ""
    if i == 0:
        return stem + "e"
    if i == 1:
        return stem + ("t" if stem.endswith(("s", "z", "x")) else e + "st")
    return stem + e + "t"


def de_verb(c):
    """(finite verb, clause-final part) for main-clause order."""
    i = PERSON_INDEX[c.subj.person]
    inf = c.vde.prefix + c.vde.inf if c.vde else "sein"
    if c.tense in ("fut", "can", "must", "want"):
        modal = {"fut": "werden", "can": "koennen", "want": "wollen",
                 "must": "duerfen" if c.neg else "muessen"}[c.tense]
        return LEX.AUX_FORMS[modal][i], [inf]
    if c.vde is None:
        return LEX.AUX_FORMS["sein" if c.tense == "pres" else "war"][i], []
    if c.tense == "past":
        return LEX.AUX_FORMS[c.verb.aux][i], [c.vde.part]
    return conjugate(c.vde, c.subj.person), [c.vde.prefix] if c.vde.prefix else []


def de_middle(c, with_subj, with_time):
    out = de_np(c.subj, "nom") if with_subj else []
    for np, case in ((c.acc, "acc"), (c.dat, "dat")):
        out += de_np(np, case) if np and np.pron else []
    out += [c.time[1]] if with_time and c.time else []
    out += de_np(c.dat, "dat") if c.dat and not c.dat.pron else []
    kein = c.neg and c.acc is not None and not c.acc.pron and c.acc.det in ("indef", "none")
    out += de_np(c.acc, "acc", negate=kein) if c.acc and not c.acc.pron else []
    out += ["nicht"] if c.neg and not kein else []
    out += [c.manner[1]] if c.manner else []
    out += c.pp[1] if c.pp else []
    return out + ([c.pred[1]] if c.pred else [])


def de_clause(c, mode="main"):
    """mode: main (verb second), q (verb first), sub / rel (verb final)."""
    fin, tail = de_verb(c)
    if mode in ("sub", "rel"):
        final = [tail[0] + fin] if c.tense == "pres" and tail else tail + [fin]
        out = de_middle(c, mode == "sub", True) + final
    elif mode == "q":
        out = [fin] + de_middle(c, True, True) + tail
    elif c.time and c.de_time_front:
        out = [c.time[1], fin] + de_middle(c, True, False) + tail
    else:
        out = de_np(c.subj, "nom") + [fin] + de_middle(c, False, True) + tail
    return out + ([",", "dass"] + de_clause(c.comp, "sub") if c.comp else [])


# ----- corpus
def finish(tokens, punct):
    out = []
    for t in tokens:
        if not (t == "," and (not out or out[-1] == ",")):
            out.append(t)
    while out and out[-1] == ",":
        out.pop()
    text = " ".join(out).replace(" ,", ",")
    return text[0].upper() + text[1:] + punct


def generate_pairs(n, seed=1, min_len=4, max_len=30):
    """Return n (en, de) pairs with pairwise distinct English sides."""
    grammar, seen, pairs = Grammar(seed), set(), []
    for _ in range(50 * n + 1000):
        if len(pairs) == n:
            return pairs
        en, de, punct = grammar.sentence()
        en, de = finish(en, punct), finish(de, punct)
        if en not in seen and all(min_len <= len(s.split()) <= max_len for s in (en, de)):
            seen.add(en)
            pairs.append((en, de))
    if len(pairs) < n:
        raise RuntimeError(f"could only generate {len(pairs)} of {n} unique pairs")
    return pairs


def _atomic_write(path, lines):
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_corpus(out_dir, sizes, seed=1, verbose=True):
    """Write {split}.en/{split}.de for each split in sizes (e.g. {"train": 40000, "valid": 1000}).

    The held-out splits are cut from the front of one stream of unique pairs
    and "train" from the rest, so valid/test do not change with the train size.
    Returns {split: [(en, de), ...]}.
    """
    os.makedirs(out_dir, exist_ok=True)
    order = [s for s in sizes if s != "train"] + (["train"] if "train" in sizes else [])
    pairs = generate_pairs(sum(sizes.values()), seed)
    result, start = {}, 0
    for split in order:
        part = pairs[start:start + sizes[split]]
        start += sizes[split]
        for side, lang in ((0, "en"), (1, "de")):
            _atomic_write(os.path.join(out_dir, f"{split}.{lang}"), [p[side] for p in part])
        result[split] = part
        if verbose:
            mean = [sum(len(p[k].split()) for p in part) / max(1, len(part)) for k in (0, 1)]
            print(f"{split}: {len(part)} pairs, mean words en {mean[0]:.1f} de {mean[1]:.1f} "
                  f"-> {os.path.join(out_dir, split)}.{{en,de}}")
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--train", type=int, default=40000)
    ap.add_argument("--valid", type=int, default=1000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    write_corpus(args.out_dir, {"train": args.train, "valid": args.valid, "test": args.test}, args.seed)


if __name__ == "__main__":
    main()
