"""How many tokens to draft, decided from what decoding measures: the drafter's own
confidence, calibrated against the verifier's acceptance, and the measured cost of an
iteration on the machine at hand.

Two decisions, both lossless (they change only how many drafts are verified, never
which token is committed):

* **before an iteration**: draft, or take a plain greedy step (k = 0: the verifier scores
  one position and the drafter is not run at all). Drafting is kept while its measured
  throughput (tokens committed per second of a drafting iteration) beats the greedy
  step's; otherwise decoding goes greedy and probes drafting again after a number of
  greedy iterations that doubles after each losing probe and keeps the probes' extra cost
  within 5% of the greedy time.
* **inside the chain** (drafters that draft step by step): after each step, one more draft
  is worth its cost when the tokens it is expected to add, per the calibrated acceptance
  of the drafts so far, raise the expected tokens per second of the iteration. Before a
  batch-size bucket has measured a drafting iteration, a chain stops after ``FIRST_DRAFTS``
  drafts: learning what drafting costs stays cheap where it turns out not to pay.

The cost model per batch-size bucket (powers of two): a greedy iteration costs ``g`` (a
running mean of measured wall times; a greedy step is taken now and then while drafting
wins, to keep it measured), an iteration with j drafts ``base + step * j`` (a least-squares
line through the measured drafting iterations, recent ones weighing more). Only the
difference matters: ``step`` is what one more draft costs (a drafter step and one more
verified position), ``base - g`` what drafting costs at all (the drafter's forward over the
verified block). A new bucket starts from its nearest neighbour's estimates.

Calibration maps the drafter's confidence (its softmax probability of the drafted
token) to the probability that the verifier accepts the draft given that the earlier
drafts were accepted: counts per confidence bin, started from a prior that trusts the
confidence, updated on the device after every iteration and read by the host only as a
small table.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

BINS = 10  # confidence bins of the calibration table
PRIOR_WEIGHT = 2.0  # pseudo-trials per bin at the bin's centre (trust the confidence at first)
DECAY = 0.9  # weight of the past in the running means (about the last 10 iterations)
FIRST_PROBE, LAST_PROBE = 4, 64  # greedy iterations before drafting is tried again (doubling)
REFRESH = 32  # drafting iterations between greedy steps that keep the greedy cost measured
PROBE_SHARE = 0.05  # a probe costs at most this share of the greedy time since the last one
FIRST_DRAFTS = 2  # drafts per iteration before drafting's cost is measured in a batch-size bucket


def bucket(batch_size: int) -> int:
    """The batch-size bucket whose costs a batch of this many rows shares: the power of two above."""
    return 1 << max(batch_size - 1, 0).bit_length()


@dataclass
class Line:
    """Least squares of drafting iterations' wall time on their number of drafts j, with
    exponentially decaying weights: ``time(j) = base + step * j``."""

    weight: float = 0.0  # sum of w
    x: float = 0.0  # sum of w j
    xx: float = 0.0  # sum of w j^2
    y: float = 0.0  # sum of w t
    xy: float = 0.0  # sum of w j t

    def add(self, drafts: float, seconds: float) -> None:
        self.weight, self.x, self.xx, self.y, self.xy = (
            DECAY * self.weight + 1.0, DECAY * self.x + drafts, DECAY * self.xx + drafts * drafts,
            DECAY * self.y + seconds, DECAY * self.xy + drafts * seconds)

    def fit(self, greedy: Optional[float]) -> Optional[Tuple[float, float]]:
        """(base, step), or None before any drafting iteration. Where j hardly varied the
        slope is not identified: then the time beyond a greedy step is spread over the j
        drafts and the drafter's forward over the verified block (``(t - g) / (j + 1)``)."""
        if self.weight == 0.0:
            return None
        mean_x, mean_y = self.x / self.weight, self.y / self.weight
        spread = self.xx / self.weight - mean_x * mean_x
        if spread > 0.25:  # j varied by about half a draft or more
            step = (self.xy / self.weight - mean_x * mean_y) / spread
        else:
            step = (mean_y - greedy) / (mean_x + 1.0) if greedy is not None else 0.0
        step = max(step, 0.0)
        return mean_y - step * mean_x, step


@dataclass
class Costs:
    """Running estimates of one bucket (seconds, tokens per iteration); None: not measured yet."""

    greedy: Optional[float] = None  # g: a greedy iteration
    drafting: Line = field(default_factory=Line)  # a drafting iteration's time against its drafts
    drafted_tokens: Optional[float] = None  # tokens committed per row and drafting iteration
    drafted_steps: Optional[float] = None  # drafts per drafting iteration
    probe_every: int = FIRST_PROBE  # greedy iterations between probes of drafting
    since_probe: int = 0  # greedy iterations since drafting last ran
    since_greedy: int = 0  # drafting iterations since the last greedy one
    observed: Dict[str, int] = field(default_factory=dict)  # measurements behind each running mean

    def update(self, name: str, value: float) -> None:
        """Fold a measurement into estimate ``name``: the plain mean of the first ones, then a
        running mean that forgets (``DECAY``)."""
        count = self.observed[name] = self.observed.get(name, 0) + 1
        old = getattr(self, name)
        setattr(self, name, value if old is None else old + max(1.0 / count, 1.0 - DECAY) * (value - old))

    def inherited(self) -> "Costs":
        """A new bucket's start from this one's estimates, each worth one measurement there."""
        line = self.drafting
        scale = 1.0 / line.weight if line.weight > 0 else 0.0
        return Costs(self.greedy, Line(*(scale * v for v in (line.weight, line.x, line.xx, line.y, line.xy))),
                     self.drafted_tokens, self.drafted_steps, self.probe_every,
                     observed={name: 1 for name in self.observed})

    def drafting_time(self, drafts: float) -> Optional[float]:
        fitted = self.drafting.fit(self.greedy)
        return None if fitted is None else fitted[0] + fitted[1] * drafts

    def step(self) -> Optional[float]:
        fitted = self.drafting.fit(self.greedy)
        return None if fitted is None else fitted[1]


def worth_drafting(costs: Costs) -> bool:
    """Whether a drafting iteration is expected to commit more tokens per second than a greedy one."""
    if costs.greedy is None or costs.drafted_tokens is None:
        return costs.greedy is not None  # measure greedy first, then drafting
    return costs.drafted_tokens / max(costs.drafting_time(costs.drafted_steps), 1e-9) >= 1.0 / costs.greedy


def probe_wait(costs: Costs, max_drafts: int) -> float:
    """Greedy iterations before drafting is probed again: ``probe_every`` (doubled after each
    lost probe), and at least as many as keep a probe's extra cost within ``PROBE_SHARE`` of
    the greedy time in between (a probe of a batch of 32 rows on a CPU costs several greedy steps)."""
    drafting = costs.drafting_time(costs.drafted_steps if costs.drafted_steps is not None else max_drafts)
    if drafting is None or not costs.greedy:
        return costs.probe_every
    return max(costs.probe_every, (drafting - costs.greedy) / (PROBE_SHARE * costs.greedy))


def worth_another_step(expected: float, gain: float, drafts: int, costs: Costs) -> bool:
    """With ``drafts`` drafts made and ``expected`` tokens expected from them (the verifier's
    own token included), whether one more draft adding ``gain`` expected tokens raises the
    iteration's tokens per second."""
    step = costs.step()
    if step is None:  # nothing measured: a short chain, so that learning what drafting costs is cheap
        return drafts < FIRST_DRAFTS
    now = max(costs.drafting_time(drafts), 1e-9)
    return (expected + gain) * now > expected * (now + step)


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
    recorded: int = 0  # iterations recorded
    drafting_iterations: int = 0

    def bucket_costs(self, batch_size: int) -> Costs:
        """The estimates of the batch size's bucket; a new bucket starts from its nearest
        measured neighbour's (rows finish and a batch moves down the buckets: exploring each
        afresh would cost more than it learns)."""
        key = bucket(batch_size)
        if key not in self.costs:
            nearest = min(self.costs, key=lambda b: abs(b.bit_length() - key.bit_length()), default=None)
            self.costs[key] = Costs() if nearest is None else self.costs[nearest].inherited()
        return self.costs[key]

    def block_for(self, batch_size: int, in_step: bool = True) -> int:
        """The most drafts of the next iteration of a batch of ``batch_size`` rows: k, or 0 for
        a greedy step. ``in_step``: the drafter has observed every committed token (a probe
        of drafting is taken only then: catching up is part of what drafting would cost)."""
        costs = self.bucket_costs(batch_size)
        if worth_drafting(costs):
            if costs.since_greedy >= REFRESH and in_step:
                return 0  # keep the greedy step's cost measured (the first ones may be cold)
            return self.max_drafts
        costs.since_probe += 1
        if costs.greedy is not None and costs.since_probe > probe_wait(costs, self.max_drafts) and in_step:
            return self.max_drafts  # probe: conditions (the sentence, the batch) may have changed
        return 0

    def calibration_on(self, device) -> Calibration:
        """The calibration counts, on ``device`` (the prior until drafts are recorded there)."""
        if self.calibration is None or self.calibration.trials.device != device:
            self.calibration = Calibration.prior(device)
        return self.calibration

    def calibrated(self, confidence: Tensor) -> Tensor:
        return self.calibration_on(confidence.device).probability(confidence)

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
        first, self.recorded = self.recorded == 0, self.recorded + 1
        if drafts == 0:
            self.greedy_iterations += 1
            costs.since_greedy = 0
            if not first:  # the very first iteration pays one-time costs
                costs.update("greedy", seconds)
            return
        self.drafting_iterations += 1
        self.drafted += drafts * batch_size
        costs.since_greedy += 1
        if not first:
            costs.drafting.add(drafts, seconds)
        costs.update("drafted_tokens", tokens_per_row)
        costs.update("drafted_steps", float(drafts))
        if costs.since_probe > 0:  # this was a probe (or the first drafting iteration)
            won = worth_drafting(costs)
            costs.probe_every = FIRST_PROBE if won else min(2 * costs.probe_every, LAST_PROBE)
        costs.since_probe = 0
        if confidence is not None and num_accepted is not None:
            self.calibration_on(confidence.device).record(confidence, num_accepted)

