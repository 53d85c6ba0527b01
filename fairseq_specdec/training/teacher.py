"""The verifier as a teacher for feature-drafter training: its teacher-forced top-layer
states over each target (what verification computes for committed tokens) and its
log-probabilities, without gradients."""
import os
from typing import Dict, List, Tuple

import torch
from fairseq import checkpoint_utils
from torch import Tensor


class TeacherVerifier:
    """A frozen verifier loaded once per training run."""

    def __init__(self, model, path: str):
        self.model = model.eval().requires_grad_(False)
        self.path = path

    @classmethod
    def load(cls, path: str, task) -> "TeacherVerifier":
        if not path or not os.path.isfile(path):
            raise FileNotFoundError(
                f"the feature drafter trains on the states of its verifier, but --init-from-verifier {path!r} "
                f"is not a file: give the verifier checkpoint it was started from")
        models, _ = checkpoint_utils.load_model_ensemble([path], task=task)
        return cls(models[0], path)

    @torch.no_grad()
    def run(self, net_input, like: Tensor) -> Tuple[Tensor, Tensor, Dict[str, List[Tensor]]]:
        """B x T x C states after each prefix y_0..y_j, B x T x V log-probabilities, and
        the encoder output; on ``like``'s device and dtype."""
        model = self.model
        param = next(model.parameters())
        if param.device != like.device or param.dtype != like.dtype:
            model.to(device=like.device, dtype=like.dtype)
        encoder_out = model.encoder(net_input["src_tokens"], src_lengths=net_input["src_lengths"])
        states, _ = model.decoder.extract_features(net_input["prev_output_tokens"], encoder_out)
        lprobs = model.get_normalized_probs((model.decoder.output_layer(states), None), log_probs=True)
        return states, lprobs, encoder_out
