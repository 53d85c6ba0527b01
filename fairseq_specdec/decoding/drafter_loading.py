"""Loading a Spec-Drafter checkpoint for decoding, with the checks that must fail
before any decoding starts (missing file, wrong model, mismatching dictionary)."""
import os
from argparse import Namespace

from fairseq import checkpoint_utils
from fairseq.data import Dictionary, data_utils

from fairseq_specdec.models.specdec_drafter import SpecDrafterModel


class DrafterCheckpointError(ValueError):
    pass


def _model_arch(state) -> str:
    cfg = state.get("cfg") or {}
    model_cfg = cfg.get("model") if hasattr(cfg, "get") else None
    if isinstance(model_cfg, Namespace):
        return getattr(model_cfg, "arch", "?")
    if model_cfg is not None and hasattr(model_cfg, "get"):
        return model_cfg.get("_name", model_cfg.get("arch", "?"))
    args = state.get("args")
    return getattr(args, "arch", "?")


def _drafter_dictionary_file(state):
    """The target dictionary the drafter was trained with, if its data folder is still there."""
    task_cfg = (state.get("cfg") or {}).get("task") or {}
    data, tgt = task_cfg.get("data"), task_cfg.get("target_lang")
    if not data:
        return None
    folder = str(data).split(":")[0]
    if not tgt and os.path.isdir(folder):
        # trained without --target-lang: fairseq inferred the pair from the data folder's files
        tgt = data_utils.infer_language_pair(folder)[1]
    if not tgt:
        return None
    path = os.path.join(folder, f"dict.{tgt}.txt")
    return path if os.path.isfile(path) else None


def check_dictionaries(state, task, path: str) -> None:
    verifier_file = os.path.join(task.cfg.data.split(":")[0], f"dict.{task.cfg.target_lang}.txt")
    drafter_file = _drafter_dictionary_file(state)
    embed = state["model"].get("decoder.embed_tokens.weight")
    drafter_size = embed.size(0) if embed is not None else None
    verifier_size = len(task.target_dictionary)
    differ = drafter_size != verifier_size
    if not differ and drafter_file is not None:
        differ = Dictionary.load(drafter_file).symbols != task.target_dictionary.symbols
    if differ:
        raise DrafterCheckpointError(
            f"drafter and verifier dictionaries differ: the drafter {path} has {drafter_size} target "
            f"symbols (trained with {drafter_file or 'a dictionary no longer on disk'}), the verifier's "
            f"task has {verifier_size} ({verifier_file}). Train the drafter on data binarized with the "
            f"verifier's dictionary (fairseq-preprocess --srcdict/--tgtdict)."
        )


def load_drafter(path: str, task) -> SpecDrafterModel:
    """Load a drafter checkpoint with ``task`` (the verifier's), after checking it fits."""
    if not os.path.isfile(path):
        raise DrafterCheckpointError(
            f"--drafter-path {path!r}: no such file. Give a checkpoint written by "
            f"fairseq-train --task specdec_translation --arch specdec_drafter_*."
        )
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
    except Exception as err:  # a truncated or foreign file: say which, keep the cause
        raise DrafterCheckpointError(f"--drafter-path {path!r}: cannot read the checkpoint ({err})") from err
    arch = _model_arch(state)
    if not str(arch).startswith("specdec_drafter"):
        raise DrafterCheckpointError(
            f"--drafter-path {path!r} holds a {arch!r} model, not a Spec-Drafter (specdec_drafter_*)"
        )
    check_dictionaries(state, task, path)
    models, _ = checkpoint_utils.load_model_ensemble([path], task=task, state=state)
    return models[0]


def place_like(drafter, verifier):
    """The drafter on the verifier's device and dtype, in eval mode."""
    param = next(verifier.parameters())
    return drafter.to(device=param.device, dtype=param.dtype).eval()
