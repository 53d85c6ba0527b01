"""What "lossless" means below fp32: when may a reduced-precision decode part from fairseq's
greedy output?

In fp32, lean greedy and SpecDec with beta = 1 return fairseq's ``--beam 1`` tokens bitwise.
In bf16 or fp16 two computations of the same logits round differently (fairseq's
incremental forward one token at a time, the lean forward over a preallocated cache, a
block of k + 1 tokens against a single one), so where the verifier's two best candidates
are nearly tied the argmax can flip, and the two sentences part ways from there on. The
rule: our hypothesis equals fairseq's, or equals it up to the first position where they
differ, and there the verifier's top-1 and top-2 log-probabilities (re-scored along
fairseq's hypothesis, in the same precision) lie within ``TOLERANCE[dtype]`` of each other.
(The transformers test suite's ``_check_similar_generate_outputs`` has the same shape: equal
sequences, or scores nearly identical up to the first mismatch.)

The tolerances, in nats, are a few rounding steps of the logits where the top candidates
sit: bf16 keeps 8 significant bits, so logits of magnitude 8-16 are multiples of 2^-4 =
0.0625 and of 16-32 of 0.125 (two candidates one step apart swap on a rounding); fp16 keeps
11 bits (0.0078 at 8-16, 0.0156 at 16-32). In fp32 the tolerance is 0: identical, or an
exact tie.
"""
import math
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from torch import Tensor

TOLERANCE = {torch.float32: 0.0, torch.bfloat16: 0.25, torch.float16: 0.05}  # nats


@dataclass
class Divergence:
    """Where a hypothesis parts from the reference, and how close the verifier's call was there."""

    position: Optional[int]  # the first differing output position; None: the hypotheses are identical
    gap: float  # the verifier's top-1 minus top-2 log-probability at ``position`` (0.0 when identical)

    def allowed(self, tolerance: float) -> bool:
        return self.position is None or self.gap <= tolerance


def first_difference(reference: List[int], ours: List[int]) -> Optional[int]:
    """The first position at which two token sequences differ (one ending first counts), or None."""
    for i, (a, b) in enumerate(zip(reference, ours)):
        if a != b:
            return i
    return None if len(reference) == len(ours) else min(len(reference), len(ours))


def top2_gaps(lprobs: Tensor) -> Tensor:
    """T x V log-probabilities -> T: top-1 minus top-2 per position (in float32)."""
    top = lprobs.float().topk(2, dim=-1).values
    return top[:, 0] - top[:, 1]


def divergence(reference: List[int], ours: List[int], lprobs: Tensor) -> Divergence:
    """Compare ``ours`` with fairseq's ``reference``; ``lprobs`` (T x V, T >= the reference's
    length) are the verifier's log-probabilities after each prefix of the reference."""
    position = first_difference(reference, ours)
    if position is None:
        return Divergence(None, 0.0)
    assert position < lprobs.size(0), f"scores of {lprobs.size(0)} positions, a difference at {position}"
    return Divergence(position, float(top2_gaps(lprobs[position : position + 1])[0]))


def rescore(model, source: Tensor, tokens: Tensor, pad: int, eos: int) -> Tensor:
    """The verifier's log-probabilities after each prefix of ``tokens`` (fairseq's hypothesis
    of ``source``, one row, padding allowed; eos last), T x V, by one full (non-incremental)
    forward of fairseq's own model in its precision; pad is excluded, as ``SequenceGenerator`` does."""
    prev = torch.cat([tokens.new_tensor([eos]), tokens[:-1]]).unsqueeze(0)  # 1 x T, the BOS first
    src = source[source.ne(pad)].unsqueeze(0)  # 1 x S
    encoder_out = model.encoder(src, src_lengths=src.new_tensor([src.size(1)]))
    lprobs = model.get_normalized_probs(model.decoder(prev, encoder_out=encoder_out), log_probs=True)[0]
    lprobs[:, pad] = -math.inf
    return lprobs


@dataclass
class Tally:
    """How a set of hypotheses compares with fairseq's under the rule."""

    sentences: int = 0
    identical: int = 0
    largest_gap: float = 0.0  # the largest top-2 gap at a divergence (0.0: none diverged)
    violations: int = 0  # divergences whose gap exceeds the tolerance

    def add(self, d: Divergence, tolerance: float) -> None:
        self.sentences += 1
        if d.position is None:
            self.identical += 1
        else:
            self.largest_gap = max(self.largest_gap, d.gap)
            self.violations += not d.allowed(tolerance)

    def summary(self) -> str:
        return (f"{self.identical}/{self.sentences} identical ({100 * self.identical / max(self.sentences, 1):.1f}%), "
                f"largest top-2 gap at a divergence {self.largest_gap:.4f}, {self.violations} beyond the tolerance")


def compare(model, sources: Dict[int, Tensor], reference: Dict[int, List[int]], ours: Dict[int, List[int]],
            pad: int, eos: int, tolerance: float) -> Tally:
    """Tally ``ours`` against fairseq's ``reference`` (sentence id -> tokens); ``sources`` holds
    each sentence's source tokens (padding allowed), re-scored only where the two differ."""
    tally = Tally()
    for sid, want in reference.items():
        got = ours[sid]
        if first_difference(want, got) is None:
            tally.add(Divergence(None, 0.0), tolerance)
            continue
        with torch.no_grad():
            lprobs = rescore(model, sources[sid], torch.tensor(want, device=sources[sid].device), pad, eos)
        tally.add(divergence(want, got, lprobs), tolerance)
    return tally


def decode_all(generator, model, batches: Iterable[Dict]) -> Tuple[Dict[int, List[int]], Dict[int, Tensor]]:
    """Each sentence's best hypothesis (id -> tokens) and its source tokens (id -> padded row)."""
    out, sources = {}, {}
    with torch.no_grad():
        for sample in batches:
            for i, hypos in enumerate(generator.generate([model], sample)):
                sid = int(sample["id"][i])
                out[sid], sources[sid] = hypos[0]["tokens"].tolist(), sample["net_input"]["src_tokens"][i]
    return out, sources
