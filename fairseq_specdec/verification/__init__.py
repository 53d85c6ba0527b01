"""Verification: the verifier scoring all drafts in one forward over its key/value cache.
The verifier state (``verifier``), the lean layers over fairseq's own weights
(``lean_weights``, ``lean_layers``) and their cache (``cache``), the static rows for CUDA
graphs (``static_rows``), the acceptance rules (``acceptance``: top-beta/tau;
``speculative_sampling``: sampling) and the reduced-precision rule (``precision_rule``).
Depends on no other part of the plugin but ``verifier_record``."""
