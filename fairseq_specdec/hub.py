"""Python entry point: fairseq's hub interface decoding speculatively.

    import fairseq_specdec.hub
    translator = fairseq_specdec.hub.from_pretrained(
        "checkpoints/verifier", "checkpoint_best.pt", "data-bin/demo",
        drafter_path="checkpoints/drafter/checkpoint_best.pt", beta=1,
        tokenizer="moses", bpe="subword_nmt", bpe_codes="data-bin/demo/codes")
    translator.translate("The king sees a big house .")

This is fairseq's own ``TransformerModel.from_pretrained`` with the task switched to
``specdec_translation``; the same works by hand with
``task={"_name": "specdec_translation", "drafter_path": ...}``. Without ``drafter_path``
the task decodes like stock fairseq.
"""
from typing import Optional

import fairseq_specdec  # noqa: F401  (registers the plugin and the checkpoint allow-list)
from fairseq.models.transformer import TransformerModel


def from_pretrained(
    model_name_or_path: str,
    checkpoint_file: str = "model.pt",
    data_name_or_path: str = ".",
    drafter_path: Optional[str] = None,
    block_size: Optional[int] = None,
    beta: int = 1,
    tau: float = 1.0,
    **kwargs,
):
    """Load a stock fairseq Transformer verifier as a hub interface whose ``translate``,
    ``sample`` and ``generate`` decode with SpecDec when ``drafter_path`` is given.
    ``block_size`` (k): None = the k the drafter was trained with."""
    task = {"_name": "specdec_translation", "drafter_path": drafter_path,
            "block_size": block_size, "beta": beta, "tau": tau}
    return TransformerModel.from_pretrained(model_name_or_path, checkpoint_file, data_name_or_path,
                                            task=task, **kwargs)
