"""Drafting: what proposes the k tokens of each iteration. The drafter protocol and the
trained drafters' base (``base``), each kind's proposer (``chain``, ``feature``, the
Spec-Drafter's in ``base``; the model-free ``ngram`` over ``ngram_index``/``ngram_data``),
the registry of kinds (``kinds``), loading a drafter checkpoint (``loading``), k
(``block_size``), the chain drafter's shortlist (``draft_vocab``) and the adaptive draft
length (``policy``). May use ``verification`` (the lean layers the chain drafter runs);
never ``decoding``, ``training`` or the benchmark."""
