"""How many tokens to draft, decided from what decoding measures: the drafter's own
confidence, calibrated against the verifier's acceptance, and the measured cost of an
iteration on the machine at hand.

Two decisions, both lossless (they change only how many drafts are verified, never
which token is committed):

* **before an iteration**: draft, or take a plain greedy step (k = 0: the verifier scores
  one position and the drafter is not run at all). Drafting is kept while its measured
  throughput (tokens committed per second of a drafting iteration) beats the greedy
  step's; otherwise decoding goes greedy and probes drafting again after a number of
  greedy iterations that doubles after each losing probe.
* **inside the chain** (drafters that draft step by step): after each step, one more draft
  is worth its cost when the tokens it is expected to add, per the calibrated acceptance
  of the drafts so far, raise the expected tokens per second of the iteration.

The cost model per batch-size bucket (powers of two) is ``T(j) = g + c * (j + 1)``: a
greedy iteration costs ``g``; an iteration with j drafts costs one unit ``c`` per chained
step plus one for the drafter's forward over the verified block (and the verifier's
extra positions). Both are running means of measured wall times.

Calibration maps the drafter's confidence (its softmax probability of the drafted
token) to the probability that the verifier accepts the draft given that the earlier
drafts were accepted: counts per confidence bin, started from a prior that trusts the
confidence, updated on the device after every iteration and read by the host only as a
small table.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from torch import Tensor

BINS = 10  # confidence bins of the calibration table
PRIOR_WEIGHT = 2.0  # pseudo-trials per bin at the bin's centre (trust the confidence at first)
DECAY = 0.9  # weight of the past in the running means (about the last 10 iterations)
FIRST_PROBE, LAST_PROBE = 4, 64  # greedy iterations before drafting is tried again (doubling)


def bucket(batch_size: int) -> int:
    """The batch-size bucket whose costs a batch of this many rows shares: the power of two above."""
    return 1 << max(batch_size - 1, 0).bit_length()


@dataclass
class Costs:
    """Running estimates of one bucket (seconds, tokens per iteration); None: not measured yet."""

    greedy: Optional[float] = None  # g: a greedy iteration
    step: Optional[float] = None  # c: one drafter step (and one more verified position)
    drafted_tokens: Optional[float] = None  # tokens committed per row and drafting iteration
    drafted_steps: Optional[float] = None  # drafts per drafting iteration
    probe_every: int = FIRST_PROBE  # greedy iterations between probes of drafting
    since_probe: int = 0  # greedy iterations since drafting last ran


def running(old: Optional[float], new: float) -> float:
    return new if old is None else DECAY * old + (1.0 - DECAY) * new


def worth_drafting(costs: Costs) -> bool:
    """Whether a drafting iteration is expected to commit more tokens per second than a greedy one."""
    if costs.greedy is None or costs.step is None or costs.drafted_tokens is None:
        return costs.greedy is not None  # measure greedy first, then drafting
    drafting_time = costs.greedy + costs.step * (costs.drafted_steps + 1.0)
    return costs.drafted_tokens / drafting_time >= 1.0 / costs.greedy


def worth_another_step(expected: float, gain: float, drafts: int, costs: Costs) -> bool:
    """With ``drafts`` drafts made and ``expected`` tokens expected from them (the verifier's
    own token included), whether one more draft adding ``gain`` expected tokens raises the
    iteration's tokens per second."""
    if costs.greedy is None or costs.step is None:
        return True  # nothing measured: draft the whole block
    now = costs.greedy + costs.step * (drafts + 1)
    return (expected + gain) * now > expected * (now + costs.step)


@dataclass
class Calibration:
    """Per confidence bin: trials (drafts whose predecessors were all accepted) and acceptances."""

    trials: Tensor  # BINS
    accepted: Tensor  # BINS
    _table: Optional[Tensor] = None  # accepted / trials, recomputed after each ``record``

    @classmethod
    def prior(cls, device) -> "Calibration":
        centres = (torch.arange(BINS, dtype=torch.float, device=device) + 0.5) / BINS
        return cls(torch.full((BINS,), PRIOR_WEIGHT, device=device), centres * PRIOR_WEIGHT)

    def table(self) -> Tensor:
        """BINS acceptance probabilities."""
        if self._table is None:
            self._table = self.accepted / self.trials
        return self._table

    def probability(self, confidence: Tensor) -> Tensor:
        """The calibrated acceptance probability of drafts with this confidence (any shape)."""
        return self.table()[confidence_bins(confidence)]

    def record(self, confidence: Tensor, num_accepted: Tensor) -> None:
        """One iteration: B x j confidences of the drafts, B accepted drafts per row."""
        position = torch.arange(confidence.size(1), device=confidence.device).unsqueeze(0)  # 1 x j
        tried = (position <= num_accepted.unsqueeze(1)).float()  # the draft was looked at
        ok = (position < num_accepted.unsqueeze(1)).float()
        bins = confidence_bins(confidence).flatten()
        self.trials.scatter_add_(0, bins, tried.flatten())
        self.accepted.scatter_add_(0, bins, ok.flatten())
        self._table = None


def confidence_bins(confidence: Tensor) -> Tensor:
    return (confidence.float() * BINS).long().clamp_(0, BINS - 1)


@dataclass
class DraftPolicy:
    """The running state behind both decisions (see the module docstring). One policy
    lives in a generator and learns across its batches."""

    max_drafts: int  # k: the most drafts per iteration
    costs: Dict[int, Costs] = field(default_factory=dict)
    calibration: Optional[Calibration] = None
    drafted: int = 0  # drafts made, over the run
    greedy_iterations: int = 0  # iterations that drafted nothing
    drafting_iterations: int = 0

    def bucket_costs(self, batch_size: int) -> Costs:
        return self.costs.setdefault(bucket(batch_size), Costs())

    def block_for(self, batch_size: int) -> int:
        """The most drafts of the next iteration of a batch of ``batch_size`` rows: k, or 0 for a greedy step."""
        costs = self.bucket_costs(batch_size)
        if worth_drafting(costs):
            return self.max_drafts
        costs.since_probe += 1
        if costs.greedy is not None and costs.since_probe > costs.probe_every:
            return self.max_drafts  # probe: conditions (the sentence, the batch) may have changed
        return 0

    def calibrated(self, confidence: Tensor) -> Tensor:
        if self.calibration is None or self.calibration.trials.device != confidence.device:
            self.calibration = Calibration.prior(confidence.device)
        return self.calibration.probability(confidence)

    def keep_drafting(self, batch_size: int, drafts: int, reach: Tensor, last: Tensor, expected: float) -> bool:
        """After ``drafts`` chained drafts: ``reach`` (B) is each row's probability that all of
        them are accepted, ``last`` (B) the last draft's calibrated probability, ``expected``
        the expected tokens per row so far (the verifier's own included)."""
        if drafts >= self.max_drafts:
            return False
        gain = float((reach * last).mean())  # the next draft is assumed as likely as the last
        return worth_another_step(expected, gain, drafts, self.bucket_costs(batch_size))

    def record(self, batch_size: int, drafts: int, tokens_per_row: float, seconds: float,
               confidence: Optional[Tensor] = None, num_accepted: Optional[Tensor] = None) -> None:
        """One iteration's outcome: ``drafts`` drafts per row (0: greedy), the tokens committed
        per row, its wall time, and with the drafts' confidences (B x j) and accepted counts
        (B) the calibration."""
        costs = self.bucket_costs(batch_size)
        if drafts == 0:
            self.greedy_iterations += 1
            costs.greedy = running(costs.greedy, seconds)
            return
        self.drafting_iterations += 1
        self.drafted += drafts * batch_size
        if costs.greedy is not None:
            costs.step = running(costs.step, max(seconds - costs.greedy, 0.0) / (drafts + 1))
        costs.drafted_tokens = running(costs.drafted_tokens, tokens_per_row)
        costs.drafted_steps = running(costs.drafted_steps, float(drafts))
        if costs.since_probe > 0:  # this was a probe (or the first drafting iteration)
            won = worth_drafting(costs)
            costs.probe_every = FIRST_PROBE if won else min(2 * costs.probe_every, LAST_PROBE)
        costs.since_probe = 0
        if confidence is not None and num_accepted is not None:
            if self.calibration is None:
                self.calibration = Calibration.prior(confidence.device)
            self.calibration.record(confidence, num_accepted)


def expected_from(probabilities: List[Tensor]) -> float:
    """Expected tokens per row of an iteration whose drafts have these calibrated
    acceptance probabilities (one B tensor per draft): 1 + sum_i mean_b prod_{l<=i} p_l."""
    expected, reach = 1.0, None
    for p in probabilities:
        reach = p if reach is None else reach * p
        expected += float(reach.mean())
    return expected
