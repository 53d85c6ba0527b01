"""Python entry point: fairseq's hub interface decoding speculatively.

    import fairseq_specdec.hub
    translator = fairseq_specdec.hub.from_pretrained(
        "checkpoints/verifier", "checkpoint_best.pt", "data-bin/demo",
        drafter_path="checkpoints/drafter/checkpoint_best.pt", beta=1,
        tokenizer="moses", bpe="subword_nmt", bpe_codes="data-bin/demo/codes")
    translator.translate("The king sees a big house .")

This is fairseq's own ``TransformerModel.from_pretrained`` with the task switched to
``specdec_translation``, returning fairseq's hub interface with one change: ``translate``
and ``generate`` default to ``beam=1`` when a drafter is given (fairseq's default is 5,
which SpecDec cannot honour: an explicit ``beam`` above 1 is refused with the task's
error). The drafter and the options are checked when the model loads, not at the first
``translate``. The same task works by hand with ``task={"_name": "specdec_translation",
"drafter_path": ...}`` (then pass ``beam=1``). Without ``drafter_path`` the task decodes
like stock fairseq.
"""
import copy
from typing import List, Optional

import fairseq_specdec  # noqa: F401  (registers the plugin and the checkpoint allow-list)
from fairseq import hub_utils
from fairseq.models.transformer import TransformerModel
from omegaconf import open_dict

STOCK_BEAM = 5  # fairseq's hub default


class SpecDecHubInterface(hub_utils.GeneratorHubInterface):
    """fairseq's ``GeneratorHubInterface`` whose default beam is 1 when it decodes speculatively."""

    def default_beam(self, beam: Optional[int]) -> int:
        if beam is not None:
            return beam
        return 1 if self.task.decodes_speculatively else STOCK_BEAM

    def translate(self, sentences: List[str], beam: Optional[int] = None, verbose: bool = False, **kwargs):
        return self.sample(sentences, self.default_beam(beam), verbose, **kwargs)

    def generate(self, tokenized_sentences, beam: Optional[int] = None, verbose: bool = False, **kwargs):
        return super().generate(tokenized_sentences, self.default_beam(beam), verbose, **kwargs)

    def check_decoding(self) -> None:
        """Build the generator once: loads the drafter and checks it and every option now."""
        gen_args = copy.deepcopy(self.cfg.generation)
        with open_dict(gen_args):
            gen_args.beam = self.default_beam(None)
        self.task.build_generator(self.models, gen_args)


def from_pretrained(
    model_name_or_path: str,
    checkpoint_file: str = "model.pt",
    data_name_or_path: str = ".",
    drafter_path: Optional[str] = None,
    block_size: Optional[int] = None,
    beta: int = 1,
    tau: float = 1.0,
    **kwargs,
) -> SpecDecHubInterface:
    """Load a stock fairseq Transformer verifier as a hub interface whose ``translate``,
    ``sample`` and ``generate`` decode with SpecDec when ``drafter_path`` is given.
    ``block_size`` (k): None = the k the drafter was trained with."""
    task = {"_name": "specdec_translation", "drafter_path": drafter_path,
            "block_size": block_size, "beta": beta, "tau": tau}
    loaded = hub_utils.from_pretrained(model_name_or_path, checkpoint_file, data_name_or_path,
                                       archive_map=TransformerModel.hub_models(), task=task, **kwargs)
    interface = SpecDecHubInterface(loaded["args"], loaded["task"], loaded["models"])
    interface.check_decoding()
    return interface
