"""Drafter training: the block layouts (``blocks``), the frozen verifier as teacher (``teacher``), and the
data writer for multilingual verifiers (``multilingual_pairs``, run before fairseq-train)."""
