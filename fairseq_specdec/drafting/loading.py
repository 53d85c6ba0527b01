"""Loading a Spec-Drafter checkpoint for decoding, with the checks that must fail
before any decoding starts (missing file, wrong model, mismatching dictionary, a
verifier whose states the drafter cannot read) and the warning when the verifier is not
the one the drafter was trained next to (``verifier_record``)."""
import logging
import os

from fairseq import checkpoint_utils
from fairseq.data import Dictionary, data_utils

from fairseq_specdec.drafting.kinds import kind_of
from fairseq_specdec.models.specdec_drafter import SpecDrafterModel
from fairseq_specdec.verifier_record import VerifierRecord, checkpoint_arch, dictionary_checksum, model_arch

logger = logging.getLogger(__name__)


class DrafterCheckpointError(ValueError):
    pass


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
    record = VerifierRecord.from_task_state(state.get("task_state"))
    if not differ and drafter_file is None and record is not None:  # the data folder is gone: the record says
        differ = record.dictionary_checksum != dictionary_checksum(task.target_dictionary)
    if differ:
        raise DrafterCheckpointError(
            f"drafter and verifier dictionaries differ: the drafter {path} has {drafter_size} target "
            f"symbols (trained with {drafter_file or 'a dictionary no longer on disk'}), the verifier's "
            f"task has {verifier_size} ({verifier_file}). Train the drafter on data binarized with the "
            f"verifier's dictionary (fairseq-preprocess --srcdict/--tgtdict)."
        )


def load_drafter(path: str, task, verifier=None) -> SpecDrafterModel:
    """Load a drafter checkpoint with ``task`` (the verifier's), after checking it fits
    (and, given the ``verifier`` model, that it fits that verifier)."""
    if not os.path.isfile(path):
        raise DrafterCheckpointError(
            f"--drafter-path {path!r}: no such file. Give a checkpoint written by "
            f"fairseq-train --task specdec_translation --arch specdec_drafter_*."
        )
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
    except Exception as err:  # a truncated or foreign file: say which, keep the cause
        raise DrafterCheckpointError(f"--drafter-path {path!r}: cannot read the checkpoint ({err})") from err
    arch = checkpoint_arch(state)
    if not str(arch).startswith("specdec_drafter"):
        raise DrafterCheckpointError(
            f"--drafter-path {path!r} holds a {arch!r} model, not a Spec-Drafter (specdec_drafter_*)"
        )
    check_dictionaries(state, task, path)
    record = VerifierRecord.from_task_state(state.get("task_state"))
    models, _ = checkpoint_utils.load_model_ensemble([path], task=task, state=state)
    if verifier is not None:
        check_verifier(models[0], record, verifier, task, path)
    return models[0]


def check_verifier(drafter, record, verifier, task, path: str) -> None:
    """Refuse a verifier whose states a state-reading drafter (chain, feature) cannot read;
    warn when the verifier differs from the one the drafter's ``record`` describes."""
    current = VerifierRecord.describe(verifier.state_dict(), model_arch(verifier), task.target_dictionary)
    trained = (f"verifier {record.source} (fingerprint {record.fingerprint})" if record is not None
               else "a verifier it does not record")
    drafter_dim = drafter.decoder.embed_tokens.embedding_dim
    if kind_of(drafter).reads_verifier_states and current.decoder_embed_dim != drafter_dim:
        raise DrafterCheckpointError(
            f"--drafter-path {path} reads the verifier's {drafter_dim}-wide decoder states (it was trained next "
            f"to {trained}), but the verifier given with --path has {current.decoder_embed_dim}-wide ones "
            f"(fingerprint {current.fingerprint}): decode with the verifier the drafter was trained with, or "
            f"train a drafter for this verifier (fairseq-train --task specdec_translation --arch "
            f"{model_arch(drafter)} --init-from-verifier THIS_VERIFIER.pt)")
    if record is None:
        logger.info(f"--drafter-path {path} records no verifier (trained without --init-from-verifier, or before "
                    f"drafters recorded theirs): not checked against the verifier")
        return
    differences = record.differences(current)
    if differences:
        logger.warning(
            f"--drafter-path {path} was trained next to verifier {record.source} (fingerprint "
            f"{record.fingerprint}), not next to the verifier given with --path (fingerprint "
            f"{current.fingerprint}): {'; '.join(differences)}. Its drafts will be accepted less often: decode "
            f"with that verifier, or retrain the drafter with --init-from-verifier pointing to this one")
    else:
        logger.info(f"--drafter-path {path}: the verifier is the one it was trained next to "
                    f"(fingerprint {record.fingerprint})")


def place_like(drafter, verifier):
    """The drafter on the verifier's device and dtype, in eval mode."""
    param = next(verifier.parameters())
    return drafter.to(device=param.device, dtype=param.dtype).eval()
