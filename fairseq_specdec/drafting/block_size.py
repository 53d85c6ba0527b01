"""k, the number of tokens the Spec-Drafter drafts per forward: its one default, the k
a drafter checkpoint was trained with, and the k decoding uses (the drafter's, unless
``--block-size`` says otherwise)."""
import logging
from typing import Optional

from fairseq_specdec.models.specdec_drafter import DEFAULT_BLOCK_SIZE

logger = logging.getLogger(__name__)

# k of the n-gram drafter when it drafts alone (--ngram-drafter without --drafter-path) and
# --block-size is not given: no checkpoint records one. Adaptive drafting cuts its drafts
# where their confidence says stop, so this is an upper bound.
NGRAM_BLOCK_SIZE = 25


def check_block_size(k: Optional[int]) -> None:
    if k is not None and k < 1:
        raise ValueError(f"--block-size must be >= 1, got {k}")


def trained_block_size(drafter) -> int:
    """The k a drafter was trained with (``drafter.trained_block_size``), saying so where its
    checkpoint does not record it. The record is the model config fairseq restores with the
    checkpoint (the same for ``fairseq-generate --path DRAFTER.pt`` and ``--drafter-path``):
    the drafter is an argparse model, so that config is the namespace of every training flag
    (fairseq's ``convert_namespace_to_omegaconf``), the task's ``--block-size`` included."""
    recorded = drafter.training_flags
    if "block_size" not in recorded:
        logger.warning(f"the drafter checkpoint records no --block-size (not written by this plugin's "
                       f"fairseq-train?): assuming the default k={DEFAULT_BLOCK_SIZE}; pass --block-size K "
                       f"if it was trained with another k")
    elif recorded["block_size"] is None:
        logger.info(f"the drafter was trained without --block-size: k={DEFAULT_BLOCK_SIZE}, the default")
    return drafter.trained_block_size


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
