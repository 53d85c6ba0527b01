"""Let stock fairseq reload its own checkpoints under torch >= 2.6.

torch 2.6 made ``torch.load`` default to ``weights_only=True``, whose unpickler refuses
every class it does not know. fairseq checkpoints store the legacy model arguments as an
``argparse.Namespace`` (``cfg["model"]``), so ``fairseq-generate``, ``fairseq-interactive``,
``fairseq-train --restore-file`` and ``from_pretrained`` fail with
"Unsupported global: argparse.Namespace".

Rather than switching the safe loader off, we allow-list exactly the classes that
fairseq checkpoints contain. Checkpoints are still pickles: load them only from sources
you trust.
"""
import argparse

import torch

# Every non-builtin class found in the checkpoints that fairseq-train writes
# (model, optimizer, extra_state with metrics and iterator state).
FAIRSEQ_CHECKPOINT_GLOBALS = (argparse.Namespace,)


def allow_fairseq_checkpoint_globals() -> bool:
    """Allow-list the classes fairseq checkpoints need; returns False on old torch.

    torch < 2.4 has no allow-list and loads with ``weights_only=False`` by default,
    so there is nothing to do there.
    """
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:
        return False
    add_safe_globals(list(FAIRSEQ_CHECKPOINT_GLOBALS))
    return True
