"""Decoding: the drafters, the verifier, the acceptance rule and the generators that
``fairseq-generate`` runs through the ``specdec_translation`` task (see
docs/architecture.md for what flows between them during one iteration)."""
