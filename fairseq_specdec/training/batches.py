"""The training batch of each drafter kind, built from a fairseq translation batch (what
``specdec_translation``'s train and valid steps hand the criterion).

- ``prefix_block_batch``: the Spec-Drafter's. Each target cut at a random point: the
  prefix before the cut, and the k tokens after it as the block target (``blocks``).
- ``verifier_state_batch``: a drafter that reads the verifier's states (chain, feature):
  the whole target, the teacher-forced verifier's states and log-probs over it, and for
  the feature drafter k and the cut points to draft after (``feature_blocks``)."""
from typing import Any, Dict

import torch
from torch import Tensor

from fairseq_specdec.training.blocks import make_block_batch, sample_cut_points
from fairseq_specdec.training.feature_blocks import pick_cuts

Batch = Dict[str, Any]


def prefix_block_batch(sample: Batch, block_size: int, pad: int, eos: int, generator: torch.Generator) -> Batch:
    """The Spec-Drafter's batch: prefixes (decoder input) and k-token block targets."""
    target = sample["target"]
    cut = sample_cut_points(target.ne(pad).sum(1), generator)
    batch = make_block_batch(target, cut, block_size, pad, eos)
    net_input = sample["net_input"]
    return {
        **sample,
        "net_input": {
            "src_tokens": net_input["src_tokens"],
            "src_lengths": net_input["src_lengths"],
            "prev_output_tokens": batch.prefix,
            "block_size": block_size,
        },
        "target": batch.block_target,
        "ntokens": int(batch.block_target.ne(pad).sum()),
    }


def verifier_state_batch(sample: Batch, states: Tensor, lprobs: Tensor, encoder_out, drafts_at_cuts: bool,
                         block_size: int, cuts_per_target: int, generator: torch.Generator) -> Batch:
    """The batch of a drafter that reads the verifier's ``states`` (B x T x C, with the
    teacher's ``lprobs`` and ``encoder_out`` over the same batch); ``drafts_at_cuts``: the
    feature drafter's k query blocks after ``cuts_per_target`` cut points (0 = every one)."""
    net_input = sample["net_input"]
    drafter_input = {
        "src_tokens": net_input["src_tokens"],
        "src_lengths": net_input["src_lengths"],
        "prev_output_tokens": net_input["prev_output_tokens"],
        "verifier_states": states,
        "target": sample["target"],
        "encoder_out": encoder_out,
    }
    if drafts_at_cuts:
        drafter_input["block_size"] = block_size
        drafter_input["cuts"] = pick_cuts(sample["target"].size(1), cuts_per_target, generator).to(states.device)
    return {**sample, "net_input": drafter_input, "teacher_lprobs": lprobs}


def _prefix_block(task, sample, model, kind, generator):
    return prefix_block_batch(sample, model.trained_block_size, task.tgt_dict.pad(), task.tgt_dict.eos(), generator)


def _verifier_states(task, sample, model, kind, generator):
    states, lprobs, encoder_out = task.teacher_for(model).run(sample["net_input"], like=next(model.parameters()))
    return verifier_state_batch(sample, states, lprobs, encoder_out, kind.drafts_at_cuts, model.trained_block_size,
                                task.cfg.cuts_per_target, generator)


# a kind's ``batch`` (``drafting.kinds.DrafterKind``) -> (task, sample, model, kind, generator) -> its batch
BUILDERS = {"prefix_block": _prefix_block, "verifier_states": _verifier_states}
