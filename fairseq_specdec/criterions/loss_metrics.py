"""Metric logging shared by the plugin's criterions."""
import math
from typing import Callable, Dict, List

from fairseq import metrics, utils


def summer(logging_outputs: List[Dict]) -> Callable[[str], float]:
    """``total(key)``: the sum of ``key`` over the logging outputs (0 where absent)."""
    return lambda key: sum(log.get(key, 0) for log in logging_outputs)


def log_losses(total: Callable[[str], float]) -> None:
    """loss and nll_loss in bits per scored token (sample_size), and the perplexity."""
    sample_size = total("sample_size")
    metrics.log_scalar("loss", total("loss") / max(sample_size, 1) / math.log(2), sample_size, round=3)
    metrics.log_scalar("nll_loss", total("nll_loss") / max(sample_size, 1) / math.log(2), sample_size, round=3)
    metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))


def log_block_accuracy(total: Callable[[str], float], blocks: float) -> None:
    """block_acc: % of drafted block tokens right; correct_lead: right tokens before a block's
    first wrong one, averaged over ``blocks``."""
    ntokens = total("ntokens")
    metrics.log_scalar("block_acc", 100.0 * total("block_correct") / max(ntokens, 1), ntokens, round=2)
    metrics.log_scalar("correct_lead", total("correct_lead") / max(blocks, 1), blocks, round=2)
