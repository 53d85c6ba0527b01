"""Loss of the feature drafter: every cut point of every target at once, cross-entropy
on the distilled tokens plus (optionally) token-level distillation from the verifier's
own distributions (DistillSpec: the drafter learns to agree with what acceptance asks)."""
from dataclasses import dataclass, field

import torch
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss
from fairseq.dataclass import FairseqDataclass

from fairseq_specdec.criterions.loss_metrics import log_block_accuracy, log_losses, summer

from fairseq_specdec.training.feature_blocks import teacher_positions, training_block_targets


@dataclass
class FeatureDrafterLossConfig(FairseqDataclass):
    label_smoothing: float = field(default=0.1, metadata={"help": "epsilon for label smoothing, 0 = none"})
    kd_weight: float = field(
        default=0.0,
        metadata={"help": "weight of the KL divergence from the verifier's distribution (token-level "
                  "distillation); the cross-entropy gets 1 - kd_weight"},
    )


@register_criterion("specdec_feature", dataclass=FeatureDrafterLossConfig)
class FeatureDrafterLoss(FairseqCriterion):
    """Trains ``specdec_feature_drafter`` (see ``fairseq_specdec.models.feature_layout``).

    The task puts the teacher-forced verifier states (and log-probabilities) into the
    sample. Logs block accuracy and the mean correct lead per cut point: the drafts a
    beta=1 verifier would accept if it agreed with the target.
    """

    def __init__(self, task, label_smoothing, kd_weight):
        super().__init__(task)
        if not 0.0 <= kd_weight <= 1.0:
            raise ValueError(f"--kd-weight must lie in [0, 1], got {kd_weight}")
        self.eps = label_smoothing
        self.kd_weight = kd_weight

    def forward(self, model, sample, reduce=True):
        net_input = sample["net_input"]
        k, target = net_input["block_size"], net_input["target"]
        cuts = net_input["cuts"]  # N
        blocks = training_block_targets(target, k, self.padding_idx)[:, cuts]  # B x N x k
        valid = blocks.ne(self.padding_idx)
        # through the model's own forward (the distributed wrapper's, in data-parallel training)
        lprobs = utils.log_softmax(model(**net_input, scored=valid), dim=-1)  # M x V
        gold = blocks[valid]
        ce, nll = label_smoothed_nll_loss(lprobs, gold.unsqueeze(-1), self.eps, reduce=True)
        loss = ce
        if self.kd_weight > 0:
            teacher = sample["teacher_lprobs"]  # B x T x V
            rows, blocks_at, offsets = valid.nonzero(as_tuple=True)
            position = teacher_positions(target.size(1), k, device=target.device)[cuts[blocks_at], offsets]
            teacher_lp = teacher[rows, position].float()  # N x V
            kl = (teacher_lp.exp() * (teacher_lp - lprobs.float())).sum()
            loss = (1.0 - self.kd_weight) * ce + self.kd_weight * kl
        predicted = torch.full_like(blocks, -1)
        predicted[valid] = lprobs.argmax(-1)
        correct = predicted.eq(blocks) & valid
        cut_valid = valid[..., 0]
        logging_output = {
            "loss": loss.data,
            "nll_loss": nll.data,
            "ntokens": int(valid.sum()),
            "nsentences": target.size(0),
            "cuts": int(cut_valid.sum()),
            "sample_size": int(valid.sum()),
            "block_correct": int(correct.sum()),
            "correct_lead": int(correct.long().cumprod(-1).sum()),
        }
        return loss, int(valid.sum()), logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        total = summer(logging_outputs)
        log_losses(total)
        log_block_accuracy(total, total("cuts"))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
