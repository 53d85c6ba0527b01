"""Drafter training: each kind's training batch (``batches``), the block layouts (``blocks``,
``feature_blocks``), the frozen verifier as teacher (``teacher``), and the data writer for
multilingual verifiers (``multilingual_pairs``, run before fairseq-train). May use
``decoding``, ``drafting`` and ``verification``; none of them uses training."""
