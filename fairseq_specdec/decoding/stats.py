"""Acceptance and timing statistics of speculative decoding, kept apart from the generator."""
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, List

import torch

logger = logging.getLogger("fairseq_specdec")


@dataclass
class DecodingStats:
    """Counts gathered over a run; the generator records into one it is handed."""

    sentences: int = 0  # sentences finished
    iterations: int = 0  # draft-and-verify iterations, summed over sentences
    committed_tokens: int = 0  # tokens committed (accepted drafts + verifier tokens), eos included
    accepted_drafts: int = 0  # drafted tokens the verifier accepted
    drafted_tokens: int = 0  # tokens drafted (and verified), summed over sentences
    greedy_iterations: int = 0  # iterations that drafted nothing (adaptive drafting), summed over sentences
    accepted_histogram: List[int] = field(default_factory=list)  # [n] = iterations that accepted n drafts
    seconds: Dict[str, float] = field(default_factory=lambda: {"drafter": 0.0, "verifier": 0.0, "other": 0.0})
    profile: bool = False  # time the parts; on CUDA this synchronizes the device around each part

    def add(self, iterations: int, committed_tokens: int, accepted_histogram: List[int], drafted_tokens: int = 0,
            greedy_iterations: int = 0) -> None:
        """Add a batch's counts: iterations (summed over its sentences), committed tokens,
        [n] = iterations that accepted n drafts, tokens drafted and iterations that drafted none."""
        self.iterations += iterations
        self.drafted_tokens += drafted_tokens
        self.greedy_iterations += greedy_iterations
        self.committed_tokens += committed_tokens
        self.accepted_drafts += sum(n * c for n, c in enumerate(accepted_histogram))
        if len(accepted_histogram) > len(self.accepted_histogram):
            self.accepted_histogram.extend([0] * (len(accepted_histogram) - len(self.accepted_histogram)))
        for n, c in enumerate(accepted_histogram):
            self.accepted_histogram[n] += c

    @contextmanager
    def timed(self, part: str, device: torch.device):
        """Add the wall time of the block to ``part``; synchronizes CUDA so the split is real."""
        if not self.profile:
            yield
            return
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start

    def summary(self) -> Dict[str, float]:
        iters = max(self.iterations, 1)
        return {
            "sentences": self.sentences,
            "iterations_per_sentence": self.iterations / max(self.sentences, 1),
            "mean_accepted_drafts": self.accepted_drafts / iters,
            "mean_committed_tokens": self.committed_tokens / iters,
            "mean_drafted_tokens": self.drafted_tokens / iters,
            "wasted_drafts_per_iteration": (self.drafted_tokens - self.accepted_drafts) / iters,
            "greedy_iteration_share": self.greedy_iterations / iters,
            **{f"{part}_seconds": s for part, s in self.seconds.items()},
        }

    def log(self) -> None:
        if self.sentences == 0:
            return
        s = self.summary()
        line = ("SpecDec: {sentences} sentences | {mean_committed_tokens:.2f} tokens per iteration "
                "({mean_accepted_drafts:.2f} accepted drafts + 1 verifier token) | "
                "{iterations_per_sentence:.2f} iterations per sentence | {mean_drafted_tokens:.2f} drafted, "
                "{wasted_drafts_per_iteration:.2f} wasted per iteration, {greedy_iteration_share:.0%} greedy steps")
        if self.profile:
            line += " | time: drafter {drafter_seconds:.2f}s, verifier {verifier_seconds:.2f}s, other {other_seconds:.2f}s"
        logger.info(line.format(**s))


class BatchTally:
    """A batch's acceptance counts, accumulated on the decoding device (no host
    synchronization per iteration) and added to a ``DecodingStats`` once, by ``flush``."""

    def __init__(self, max_drafts: int, device: torch.device):
        self.iterations = 0  # on the host: the number of active rows is known there
        self.drafted = 0  # on the host: drafts per row are known there
        self.greedy = 0  # row-iterations without drafts
        self.histogram = torch.zeros(max_drafts + 1, dtype=torch.long, device=device)  # [n]: accepted n
        self.committed = torch.zeros(1, dtype=torch.long, device=device)

    def record(self, num_accepted: torch.Tensor, num_committed: torch.Tensor, drafted: int = 0) -> None:
        """One iteration: accepted drafts and committed tokens per active sentence (B each),
        and the drafts each row had."""
        self.iterations += num_accepted.numel()
        self.drafted += drafted * num_accepted.numel()
        self.greedy += num_accepted.numel() if drafted == 0 else 0
        self.histogram.scatter_add_(0, num_accepted, torch.ones_like(num_accepted))
        self.committed += num_committed.sum()

    def flush(self, stats: DecodingStats) -> None:
        committed, *histogram = torch.cat([self.committed, self.histogram]).tolist()
        while histogram and histogram[-1] == 0:
            histogram.pop()
        stats.add(self.iterations, committed, histogram, self.drafted, self.greedy)
