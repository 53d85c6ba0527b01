"""Loss of the chain drafter (``specdec_chain_drafter``, EAGLE-style): at every target
position, regress the verifier's next top-layer state and predict its token through the
verifier's output projection (cross-entropy on the distilled token, plus optionally the
KL divergence from the verifier's own distribution)."""
from dataclasses import dataclass, field

import torch.nn.functional as F
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss
from fairseq.dataclass import FairseqDataclass

from fairseq_specdec.criterions.loss_metrics import log_losses, summer


@dataclass
class ChainDrafterLossConfig(FairseqDataclass):
    label_smoothing: float = field(default=0.1, metadata={"help": "epsilon for label smoothing, 0 = none"})
    kd_weight: float = field(
        default=0.0, metadata={"help": "weight of the KL divergence from the verifier's distribution; "
                               "the cross-entropy gets 1 - kd_weight"})
    state_weight: float = field(
        default=1.0, metadata={"help": "weight of the smooth-L1 regression of the verifier's state "
                               "(per token, averaged over the state's dimensions)"})


@register_criterion("specdec_chain", dataclass=ChainDrafterLossConfig)
class ChainDrafterLoss(FairseqCriterion):
    """Teacher-forced loss of the chain drafter; logs its token accuracy (top-1 equal to the
    target) and the state regression error."""

    def __init__(self, task, label_smoothing, kd_weight, state_weight):
        super().__init__(task)
        if not 0.0 <= kd_weight <= 1.0:
            raise ValueError(f"--kd-weight must lie in [0, 1], got {kd_weight}")
        self.eps, self.kd_weight, self.state_weight = label_smoothing, kd_weight, state_weight

    def forward(self, model, sample, reduce=True):
        net_input = sample["net_input"]
        target = net_input["target"]
        valid = target.ne(self.padding_idx)
        # through the model's own forward (the distributed wrapper's, in data-parallel training)
        predicted, logits = model(**net_input)  # N x C, N x V at the valid positions
        lprobs = utils.log_softmax(logits, dim=-1)
        gold = target[valid]
        ce, nll = label_smoothed_nll_loss(lprobs, gold.unsqueeze(-1), self.eps, reduce=True)
        loss = ce
        if self.kd_weight > 0:
            teacher = sample["teacher_lprobs"][valid].float()  # N x V
            kl = (teacher.exp() * (teacher - lprobs.float())).sum()
            loss = (1.0 - self.kd_weight) * ce + self.kd_weight * kl
        states = net_input["verifier_states"][valid].to(predicted.dtype)
        state_loss = F.smooth_l1_loss(predicted, states, reduction="none").mean(-1).sum()
        loss = loss + self.state_weight * state_loss
        ntokens = int(valid.sum())
        logging_output = {
            "loss": loss.data, "nll_loss": nll.data, "state_loss": state_loss.data,
            "ntokens": ntokens, "nsentences": target.size(0), "sample_size": ntokens,
            "correct": int(lprobs.argmax(-1).eq(gold).sum()),
        }
        return loss, ntokens, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        total = summer(logging_outputs)
        log_losses(total)
        sample_size, ntokens = total("sample_size"), total("ntokens")
        metrics.log_scalar("state_loss", total("state_loss") / max(sample_size, 1), sample_size, round=4)
        metrics.log_scalar("acc", 100.0 * total("correct") / max(ntokens, 1), ntokens, round=2)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
