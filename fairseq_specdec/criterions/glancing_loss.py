"""Glancing training (GLAT, Qian et al., 2021) for the Spec-Drafter's k-token blocks."""
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss
from fairseq.dataclass import FairseqDataclass
from omegaconf import II
from torch import Tensor

from fairseq_specdec.criterions.loss_metrics import log_block_accuracy, log_losses, summer


@dataclass
class GlancingLossConfig(FairseqDataclass):
    label_smoothing: float = field(default=0.1, metadata={"help": "epsilon for label smoothing, 0 = none"})
    glance_ratio_start: float = field(
        default=0.5, metadata={"help": "glancing ratio at the first update (reveal ratio x wrong predictions)"}
    )
    glance_ratio_end: float = field(default=0.3, metadata={"help": "glancing ratio after --glance-anneal-updates"})
    glance_anneal_updates: int = field(
        default=0, metadata={"help": "updates over which the ratio moves linearly from start to end; 0 = --max-update"}
    )
    max_update: int = II("optimization.max_update")


@register_criterion("specdec_glancing", dataclass=GlancingLossConfig)
class GlancingLoss(FairseqCriterion):
    """Spec-Drafter loss (Xia et al., 2023, Sec. 3.1, trained with glancing).

    A first pass without gradients predicts every query; ground-truth tokens are then
    revealed at round(ratio x #wrong) random query positions, and the loss (label
    smoothed) is taken on the positions that stay masked. The ratio anneals linearly.
    Logs block accuracy (first pass) and the mean correct lead, which bounds how many
    drafts a verifier that agrees with the reference would accept.
    """

    def __init__(self, task, label_smoothing, glance_ratio_start, glance_ratio_end, glance_anneal_updates,
                 max_update):
        super().__init__(task)
        self.eps = label_smoothing
        self.ratio_start = glance_ratio_start
        self.ratio_end = glance_ratio_end
        self.anneal_updates = glance_anneal_updates or max_update
        self.num_updates = 0

    def set_num_updates(self, num_updates):
        self.num_updates = num_updates

    def glance_ratio(self) -> float:
        if not self.anneal_updates or self.anneal_updates <= 0:
            return self.ratio_end
        progress = min(1.0, self.num_updates / self.anneal_updates)
        return self.ratio_start + (self.ratio_end - self.ratio_start) * progress

    def forward(self, model, sample, reduce=True):
        net_input = sample["net_input"]
        target = sample["target"]  # B x k
        valid = target.ne(self.padding_idx)
        ratio = self.glance_ratio() if model.training else 0.0

        def glance(first_pass: Tensor) -> Tensor:
            """The target tokens revealed to the second pass (pad where the query stays masked)."""
            count = glance_count((valid & ~first_pass.eq(target)).sum(1), ratio)
            return target.masked_fill(~choose_glance_positions(valid, count), self.padding_idx)

        # through the model's own forward (the distributed wrapper's, in data-parallel training)
        out = model(**net_input, glance=glance if ratio > 0 else None)
        logits = out.logits
        correct = out.first_pass.eq(target) & valid
        revealed = out.revealed.ne(self.padding_idx) if out.revealed is not None else torch.zeros_like(valid)
        scored = valid & ~revealed
        lprobs = utils.log_softmax(logits[scored], dim=-1)  # N x V
        loss, nll_loss = label_smoothed_nll_loss(lprobs, target[scored].unsqueeze(-1), self.eps, reduce=True)
        sample_size = int(scored.sum())
        logging_output = {
            "loss": loss.data,
            "nll_loss": nll_loss.data,
            "ntokens": int(valid.sum()),
            "nsentences": target.size(0),
            "sample_size": sample_size,
            "block_correct": int(correct.sum()),
            "correct_lead": int(correct.long().cumprod(1).sum()),
            "revealed": int(revealed.sum()),
            "glance_ratio": ratio * target.size(0),
        }
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        total = summer(logging_outputs)
        log_losses(total)
        nsentences = total("nsentences")
        log_block_accuracy(total, nsentences)
        metrics.log_scalar("glance_ratio", total("glance_ratio") / max(nsentences, 1), nsentences, round=3)
        metrics.log_scalar("revealed", total("revealed") / max(nsentences, 1), nsentences, round=2)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


def glance_count(num_wrong: Tensor, ratio: float) -> Tensor:
    """How many ground-truth tokens glancing reveals per row: round(num_wrong * ratio)."""
    return torch.floor(num_wrong.double() * ratio + 0.5).long()


def choose_glance_positions(
    valid: Tensor, count: Tensor, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Pick ``count[i]`` random positions among the ``valid[i]`` ones (B x k bool -> B x k bool)."""
    scores = torch.rand(valid.shape, generator=generator, device="cpu").to(valid.device)
    scores = scores.masked_fill(~valid, 2.0)  # invalid positions sort last
    order = scores.argsort(dim=1)
    ranks = order.argsort(dim=1)  # rank of each position in the random order
    return (ranks < count.unsqueeze(1)) & valid
