"""Drafting over a shortlist of the vocabulary (``--draft-vocab N``): the N most frequent
target tokens of the training data.

A chain drafter reads each drafted token through the verifier's output projection, once
per chained step: at batch 1 that projection is read from memory k times per iteration, and
for a real vocabulary (32k types x 512 dims: 64 MB in fp32) it costs more than the
drafter's own layer. Rare tokens are seldom drafted right anyway; scoring only the N most
frequent ones makes each step cheaper. Verification is unchanged (the verifier scores the
whole vocabulary), so the output stays greedy's at beta = 1; only drafts of tokens outside
the shortlist are lost.
"""
import logging
from typing import List, Optional

import torch
from fairseq.data import Dictionary
from torch import Tensor

from fairseq_specdec.drafting.base import forbidden_tokens
from fairseq_specdec.drafting.ngram_data import NGramDataError, load_target_sentences

logger = logging.getLogger(__name__)


class DraftVocabError(ValueError):
    pass


def target_counts(sentences: List[Tensor], vocab: int) -> Tensor:
    """How often each token id occurs in ``sentences`` (V counts)."""
    if not sentences:
        return torch.zeros(vocab, dtype=torch.long)
    return torch.bincount(torch.cat(sentences).long(), minlength=vocab)[:vocab]


def shortlist(counts: Tensor, size: int, eos: int, forbidden: Tensor) -> Tensor:
    """The ids of the ``size`` most frequent tokens (ties: the lower id first), sorted; eos
    always among them, the ``forbidden`` ones (never drafted) never. Tokens that never
    occur are left out, so the list may be shorter than ``size``."""
    if size < 1:
        raise DraftVocabError(f"--draft-vocab must be >= 1 (or 0 for the whole vocabulary), got {size}")
    score = counts.double().clone()
    score[forbidden] = -1.0
    score[eos] = float("inf")
    order = torch.sort(-score, stable=True).indices  # most frequent first; equal counts by id
    chosen = order[:size]
    chosen = chosen[score[chosen] > 0]
    return torch.sort(chosen).values


def load_shortlist(data_dir: str, src: str, tgt: str, tgt_dict: Dictionary, size: int,
                   dataset_impl: Optional[str] = None, data_flag: str = "--data") -> Tensor:
    """``shortlist`` of the train targets in ``data_dir`` (fairseq-preprocess's --destdir,
    given as ``data_flag``)."""
    try:
        sentences = load_target_sentences(data_dir, src, tgt, tgt_dict, "train", dataset_impl, data_flag)
    except NGramDataError as err:
        raise DraftVocabError(f"{err}; --draft-vocab counts the tokens of the train targets") from err
    counts = target_counts(sentences, len(tgt_dict))
    chosen = shortlist(counts, size, tgt_dict.eos(), forbidden_tokens(tgt_dict))
    covered = float(counts[chosen].sum()) / max(float(counts.sum()), 1.0)
    logger.info("--draft-vocab %d: drafting among %d tokens, %.2f%% of the %d train target tokens of %s", size,
                chosen.numel(), 100 * covered, int(counts.sum()), data_dir)
    return chosen
