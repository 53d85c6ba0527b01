"""What the speculative and the drafter-only generators share: fairseq's
``SequenceGenerator`` options and output format, with a blockwise decoding loop."""
import math
from typing import Dict, List, Optional, Tuple

import torch
from fairseq.sequence_generator import SequenceGenerator
from torch import Tensor

from fairseq_specdec.decoding.committed import CommittedTokens
from fairseq_specdec.decoding.length_limit import length_limit
from fairseq_specdec.decoding.output_rules import BlockRules, OutputRules, force_, output_rules
from fairseq_specdec.decoding.stats import DecodingStats


class BlockwiseGenerator(SequenceGenerator):
    """Base of generators that commit several tokens per iteration, one hypothesis each."""

    def __init__(self, models, tgt_dict, block_size: int, stats: Optional[DecodingStats] = None, **kwargs):
        assert block_size >= 0, f"the block size must be >= 0 (checked by decoding.plan), got {block_size}"
        super().__init__(models, tgt_dict, beam_size=1, **kwargs)
        if self.match_source_len:
            raise ValueError("--match-source-len is not supported with blockwise decoding")
        if self.lm_model is not None:
            raise ValueError("language-model fusion (--lm-path) is not supported with blockwise decoding")
        self.block_size = block_size
        self.stats = stats if stats is not None else DecodingStats()

    def _generate(
        self,
        sample: Dict[str, Dict[str, Tensor]],
        prefix_tokens: Optional[Tensor] = None,
        constraints: Optional[Tensor] = None,
        bos_token: Optional[int] = None,
    ) -> List[List[Dict[str, Tensor]]]:
        if constraints is not None:
            raise ValueError("--constraints is not supported with blockwise decoding")
        net_input = sample["net_input"]
        src_tokens = net_input["src_tokens"]
        bsz, src_len = src_tokens.size()[:2]
        max_len = length_limit(self.max_len_a, self.max_len_b, src_len, self.max_len)
        assert self.min_len <= max_len, "min_len cannot be larger than max_len, please adjust these!"
        self.check_drafter_length(max_len)
        bos = self.eos if bos_token is None else bos_token
        committed = CommittedTokens(bsz, max_len, self.block_size + 1, self.pad, bos, src_tokens.device)
        rules = output_rules(prefix_tokens, self.ngram_size, bsz, self.pad, max_len, src_tokens.device)
        self._decode(net_input, committed, max_len, rules)
        self.stats.sentences += bsz
        return committed.hypotheses(self.normalize_scores, self.len_penalty)

    def check_drafter_length(self, max_len: int) -> None:
        """Fail before decoding when the drafter's positions cannot hold the longest input."""
        needed = max_len + 1 + self.block_size  # BOS + up to max_len tokens + k queries
        available = self.drafter.max_positions()
        if available < needed:
            raise ValueError(
                f"the drafter's decoder holds {available} positions, but decoding up to {max_len} tokens "
                f"with --block-size {self.block_size} needs {needed}: lower --max-len-a/--max-len-b or "
                f"--block-size, or train the drafter with --max-target-positions >= {needed}"
            )

    @property
    def ngram_size(self) -> int:
        """--no-repeat-ngram-size (0: off); applied by ``output_rules``, not by fairseq's blocker."""
        blocker = self.repeat_ngram_blocker
        return 0 if blocker is None else blocker.no_repeat_ngram_size

    def _decode(self, net_input, committed: CommittedTokens, max_len: int, rules: Optional[OutputRules]) -> None:
        """Decode every row of ``committed`` to its eos (or ``max_len`` tokens) under ``rules``
        (a forced prefix, the n-gram ban; None: neither)."""
        raise NotImplementedError

    def _constrain(self, lprobs: Tensor, steps: Tensor, max_len: int, may_reach_max_len: bool,
                   rules: Optional[BlockRules] = None) -> None:
        """The per-step rules of ``SequenceGenerator`` applied in place to B x n x V log-probs
        whose row (b, i) predicts output step ``steps[b, i]`` (0 = first token);
        ``may_reach_max_len`` (known on the host) is False when no step can be >= max_len;
        ``rules``: the block's forced tokens and banned n-grams (``output_rules``)."""
        lprobs.nan_to_num_(nan=-math.inf)
        lprobs[..., self.pad] = -math.inf
        if self.unk_penalty != 0:
            lprobs[..., self.unk] -= self.unk_penalty
        forced = None if rules is None else rules.forced
        if forced is not None:  # the forced token's score is read before the other rules
            forced_lprobs = lprobs.gather(2, forced.tokens.unsqueeze(-1))
        if rules is not None and rules.banned is not None:
            lprobs.scatter_(2, rules.banned, -math.inf)  # pad stands for "nothing": it is -inf already
        free = None if rules is None or rules.free_from == 0 else steps >= rules.free_from
        if self.token_indices_to_suppress is not None:
            suppressed = self.token_indices_to_suppress.to(lprobs.device)
            if free is None:
                lprobs[..., suppressed] = -math.inf
            else:
                lprobs[..., suppressed] = lprobs[..., suppressed].masked_fill(free.unsqueeze(-1), -math.inf)
        if self.min_len > 0:
            early = steps < self.min_len
            lprobs[..., self.eos].masked_fill_(early if free is None else early & free, -math.inf)
        if may_reach_max_len:
            over = steps >= max_len
            eos_lprob = lprobs[..., self.eos].clone()
            lprobs.masked_fill_(over.unsqueeze(-1), -math.inf)
            lprobs[..., self.eos] = torch.where(over, eos_lprob, lprobs[..., self.eos])
        if forced is not None:
            force_(lprobs, forced, forced_lprobs)


def read_finished(finished: Tensor, lengths: Tensor, counts: Tensor) -> Tuple[List[bool], int, int]:
    """The iteration's one read from the device: which rows finished (B), the longest of
    ``lengths`` (the active rows' committed lengths) and the sum of ``counts`` (the tokens
    committed this iteration)."""
    *flags, longest, total = torch.cat([finished.long(), lengths.max().view(1), counts.sum().view(1)]).tolist()
    return [bool(f) for f in flags], longest, total


def unfinished_rows(finished: List[bool], device: torch.device) -> Tensor:
    """Indices of the rows still decoding, as a device tensor (copied from the host, no sync)."""
    return torch.tensor([i for i, done in enumerate(finished) if not done], dtype=torch.long, device=device)
