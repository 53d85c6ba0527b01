"""Decoding: the loop and the generators that ``fairseq-generate`` runs through the plugin's
tasks (``generators.build_generator``; the speculative, lean-greedy and drafter-only
generators), over ``drafting`` and ``verification``, with the committed tokens, fairseq's
output rules and the length limit (see docs/architecture.md for what flows between them
during one iteration). Never uses ``training`` or the benchmark."""
