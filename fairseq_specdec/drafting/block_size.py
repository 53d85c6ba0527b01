"""k, the number of tokens the Spec-Drafter drafts per forward: its one default, the k
a drafter checkpoint was trained with, and the k decoding uses (the drafter's, unless
``--block-size`` says otherwise)."""
import logging
from argparse import Namespace
from typing import Optional

from fairseq_specdec.drafting.kinds import kind_of

logger = logging.getLogger(__name__)

# k when a drafter is trained without --block-size (the paper's k). Such a checkpoint
# records no k (its --block-size is None) and decodes with this value, so changing it
# changes how those checkpoints decode.
DEFAULT_BLOCK_SIZE = 25

# k of the n-gram drafter when it drafts alone (--ngram-drafter without --drafter-path) and
# --block-size is not given: no checkpoint records one. Adaptive drafting cuts its drafts
# where their confidence says stop, so this is an upper bound.
NGRAM_BLOCK_SIZE = 25


def check_block_size(k: Optional[int]) -> None:
    if k is not None and k < 1:
        raise ValueError(f"--block-size must be >= 1, got {k}")


def trained_block_size(model_cfg) -> int:
    """The k a drafter checkpoint was trained with, read from the model config fairseq
    restores with it (what ``task.build_model`` receives, the same for ``fairseq-generate
    --path DRAFTER.pt`` and ``--drafter-path``). The drafter is an argparse model, so that
    config is the namespace of every training flag (fairseq's
    ``convert_namespace_to_omegaconf``), the task's ``--block-size`` included: the value of
    the checkpoint's ``cfg.task.block_size``, and of ``args.block_size`` in an args-style
    checkpoint."""
    recorded = vars(model_cfg) if isinstance(model_cfg, Namespace) else dict(model_cfg or {})
    if "block_size" not in recorded:
        logger.warning(f"the drafter checkpoint records no --block-size (not written by this plugin's "
                       f"fairseq-train?): assuming the default k={DEFAULT_BLOCK_SIZE}; pass --block-size K "
                       f"if it was trained with another k")
        return DEFAULT_BLOCK_SIZE
    if recorded["block_size"] is None:
        logger.info(f"the drafter was trained without --block-size: k={DEFAULT_BLOCK_SIZE}, the default")
        return DEFAULT_BLOCK_SIZE
    return int(recorded["block_size"])


def decoding_block_size(requested: Optional[int], trained: int) -> int:
    """``--block-size`` when given (with a warning when it differs from the drafter's k), else the drafter's k."""
    k = trained if requested is None else requested
    if k != trained:
        logger.warning(f"--block-size {requested} differs from k={trained}, the k the drafter was trained "
                       f"with: decoding with k={k} (leave --block-size out to use the drafter's)")
    else:
        logger.info(f"decoding with k={k}, the drafter's (from its checkpoint)")
    return k


def ngram_block_size(requested: Optional[int]) -> int:
    """k of the n-gram drafter drafting alone: ``--block-size`` when given, else ``NGRAM_BLOCK_SIZE``."""
    if requested is not None:
        return requested
    logger.info(f"the n-gram drafter drafts up to k={NGRAM_BLOCK_SIZE} tokens per iteration (--block-size K to change)")
    return NGRAM_BLOCK_SIZE


def check_drafter_block_size(drafter_model, k: int) -> None:
    """Refuse a k the drafter cannot draft, before decoding starts (a feature drafter's
    offset embedding holds at most ``--max-block-size`` queries: its kind's ``max_block_size``)."""
    kind = kind_of(drafter_model)
    limit = None if kind is None else kind.max_block_size(drafter_model)
    if limit is not None and k > limit:
        raise ValueError(f"--block-size {k} exceeds this {kind.name}'s --max-block-size {limit} (the most "
                         f"queries it was trained to draft): decode with --block-size <= {limit}, or leave "
                         f"--block-size out to use the drafter's own k")
