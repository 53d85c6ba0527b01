"""Checkpoints saved by an earlier version of the plugin (``tests/old_checkpoints/``, made
by its ``build.py`` before drafting and verification became packages of their own) still
load, and decode to what they decoded to then: every hypothesis identical, every
positional score equal to the four decimals fairseq prints (one unit of the last printed
decimal allowed: float sums may round the other way on another CPU)."""
from pathlib import Path

import pytest

from old_checkpoint_runs import DECODINGS, LOSSLESS, generate_lines

ROOT = Path(__file__).resolve().parent / "old_checkpoints"


def parse(lines):
    """{sentence id: (hypothesis, positional scores)} from H- and P- lines."""
    out = {}
    for line in lines:
        fields = line.split("\t")
        sid = int(fields[0][2:])
        hyp, scores = out.get(sid, (None, None))
        if line.startswith("H-"):
            hyp = fields[2]
        else:
            scores = [float(x) for x in fields[1].split()]
        out[sid] = (hyp, scores)
    return out


def expected(name):
    return parse((ROOT / "expected" / f"{name}.txt").read_text().splitlines())


@pytest.mark.parametrize("name", sorted(DECODINGS))
def test_old_checkpoints_decode_as_they_did(name, tmp_path):
    want, got = expected(name), parse(generate_lines(ROOT, name, tmp_path))
    assert sorted(got) == sorted(want) == list(range(24))
    for sid, (hyp, scores) in want.items():
        assert got[sid][0] == hyp, f"{name}, sentence {sid}"
        assert got[sid][1] == pytest.approx(scores, abs=1.5e-4), f"{name}, sentence {sid}"


def test_the_stored_lossless_decodings_are_the_greedy_output():
    """The fixture itself: each lossless decoding recorded fairseq's greedy hypotheses, and
    the relaxed one (beta 3) differs from it somewhere, so both rules are exercised."""
    greedy = {sid: hyp for sid, (hyp, _) in expected("greedy").items()}
    for name in LOSSLESS:
        assert {sid: hyp for sid, (hyp, _) in expected(name).items()} == greedy, name
    assert {sid: hyp for sid, (hyp, _) in expected("spec_relaxed").items()} != greedy
