"""fairseq's output length limit, written once: every generator, the benchmark's modes and
its CTranslate2 peer call it (``scripts/score_verifier.sh`` states the same formula in awk)."""


def length_limit(max_len_a: float, max_len_b: int, src_len: int, max_positions: int) -> int:
    """The most output tokens (eos not counted) ``SequenceGenerator`` allows for a batch whose
    padded source length (eos included) is ``src_len``: ``min(int(a * src_len + b),
    max_positions - 1)``, ``max_positions`` being the decoder's (or the generator's --max-len)."""
    return min(int(max_len_a * src_len + max_len_b), max_positions - 1)
