"""A drafter checkpoint records the verifier it was trained next to (``verifier_record``):
its fingerprint survives dtype casts and tells other weights apart; decoding next to
another verifier is refused when a drafter that reads the verifier's states cannot read
them (another width), and warned about otherwise; drafters without a record still load."""
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import fairseq_specdec  # noqa: E402,F401
from fairseq import checkpoint_utils, options, tasks  # noqa: E402
from fairseq.data import Dictionary  # noqa: E402
from fairseq.dataclass.utils import convert_namespace_to_omegaconf  # noqa: E402

from conftest import TINY_MODEL, TRAIN_OPTS, USER_DIR, run  # noqa: E402
from fairseq_specdec.drafting.loading import DrafterCheckpointError  # noqa: E402
from fairseq_specdec.verifier_record import (  # noqa: E402
    RECORD_KEY, VerifierRecord, bound_weight_names, stats_match, weight_stats)

from test_errors import K, setup_generation  # noqa: E402,F401  (fairseq-generate's steps, k = 5)

LOADER = "fairseq_specdec.drafting.loading"


def decode_first_batch(demo_data, verifier, drafter):
    """Build the SpecDec generator for ``verifier`` and ``drafter`` and decode 4 test sentences."""
    cfg, task, models, saved_cfg = setup_generation(demo_data, verifier, ["--drafter-path", str(drafter)])
    generator = task.build_generator(models, cfg.generation)
    task.load_dataset("test", task_cfg=saved_cfg.task)
    itr = task.get_batch_iterator(dataset=task.dataset("test"), max_sentences=4,
                                  disable_iterator_cache=True).next_epoch_itr(shuffle=False)
    hypos = generator.generate(models, next(iter(itr)))
    assert len(hypos) == 4 and all(h[0]["tokens"].numel() > 0 for h in hypos)


def loader_messages(caplog, level):
    return [r.getMessage() for r in caplog.records if r.name == LOADER and r.levelno == level]


def recorded(path) -> VerifierRecord:
    return VerifierRecord.from_task_state(checkpoint_utils.load_checkpoint_to_cpu(str(path)).get("task_state"))


# ---------------------------------------------------------------- the fingerprint

@pytest.mark.parametrize("shape", [(648, 64), (64,), (3, 5, 7), (70000,)])
def test_weight_stats_survive_half_precision_casts(shape):
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 0.1
    want = weight_stats(weight)
    for dtype in (torch.float16, torch.bfloat16):
        assert stats_match(want, weight_stats(weight.to(dtype)))
        assert stats_match(want, weight_stats(weight.to(dtype).float()))


def test_weight_stats_tell_other_weights_apart():
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(648, 64, generator=gen)
    want = weight_stats(weight)
    assert not stats_match(want, weight_stats(torch.randn(648, 64, generator=gen)))  # another training
    assert not stats_match(want, weight_stats(weight + 0.05 * torch.randn(648, 64, generator=gen)))  # fine-tuned
    assert not stats_match(want, weight_stats(weight.flip(0)))  # the same values elsewhere
    assert not stats_match(want, weight_stats(1.05 * weight))  # only the norm
    assert weight_stats(torch.zeros(5)) == [0.0] * 5  # all-zero biases have stats too


def toy_verifier(seed: int):
    gen = torch.Generator().manual_seed(seed)
    embed = torch.randn(12, 8, generator=gen)
    state = {"encoder.embed_tokens.weight": embed, "decoder.embed_tokens.weight": embed,
             "decoder.output_projection.weight": embed, "decoder.version": torch.tensor([3.0])}
    for side in ("encoder", "decoder"):
        for layer in range(2):
            state[f"{side}.layers.{layer}.fc1.weight"] = torch.randn(16, 8, generator=gen)
            state[f"{side}.layers.{layer}.fc1.bias"] = torch.zeros(16)
    return state


def toy_dictionary(extra=()):
    dictionary = Dictionary()
    for symbol in ["a", "b", *extra]:
        dictionary.add_symbol(symbol)
    return dictionary


def test_record_compares_verifiers_up_to_a_cast(tmp_path):
    state = toy_verifier(0)
    assert bound_weight_names(state) == sorted([
        "decoder.embed_tokens.weight", "decoder.layers.1.fc1.bias", "decoder.layers.1.fc1.weight",
        "decoder.output_projection.weight", "encoder.embed_tokens.weight", "encoder.layers.1.fc1.bias",
        "encoder.layers.1.fc1.weight"])  # embeddings, projection, top layers; no version buffer
    record = VerifierRecord.describe(state, "transformer", toy_dictionary(), source="v.pt")
    assert (record.encoder_embed_dim, record.decoder_embed_dim, record.encoder_layers, record.decoder_layers) == (
        8, 8, 2, 2)
    half = VerifierRecord.describe({n: t.half() for n, t in state.items()}, "transformer", toy_dictionary())
    assert record.differences(half) == []
    # stored as plain types: torch.load(weights_only=True) reads it back
    torch.save({RECORD_KEY: record.to_state()}, tmp_path / "task_state.pt")
    assert VerifierRecord.from_task_state(torch.load(tmp_path / "task_state.pt", weights_only=True)) == record
    assert VerifierRecord.from_task_state({}) is None


def test_record_names_what_differs():
    record = VerifierRecord.describe(toy_verifier(0), "transformer", toy_dictionary())
    other = VerifierRecord.describe(toy_verifier(1), "transformer_wmt_en_de", toy_dictionary(["c"]))
    found = "; ".join(record.differences(other))
    assert "architecture transformer vs transformer_wmt_en_de" in found
    assert "target dictionary of 6 symbols" in found and "vs 7" in found
    assert "5 of 7 fingerprinted weights differ" in found  # all but the two all-zero biases
    assert record.fingerprint != other.fingerprint
    retrained_top = toy_verifier(0)
    retrained_top["decoder.layers.1.fc1.weight"] = retrained_top["decoder.layers.1.fc1.weight"] * 1.1
    found = record.differences(VerifierRecord.describe(retrained_top, "transformer", toy_dictionary()))
    assert found == ["1 of 7 fingerprinted weights differ (decoder.layers.1.fc1.weight, ...)"]


# ---------------------------------------------------------------- next to real verifiers

@pytest.fixture(scope="module")
def perturbed_verifier(tiny_verifier, tmp_path_factory):
    """The tiny verifier with every weight moved by 10% of its spread: another verifier of
    the same widths (what further training or another seed gives)."""
    state = torch.load(str(tiny_verifier), map_location="cpu", weights_only=False)
    gen = torch.Generator().manual_seed(3)
    for tensor in {t.data_ptr(): t for t in state["model"].values()}.values():  # shared embeddings: once
        if tensor.is_floating_point() and tensor.numel() > 1:
            tensor.add_(0.1 * tensor.std() * torch.randn(tensor.shape, generator=gen))
    path = tmp_path_factory.mktemp("perturbed") / "verifier.pt"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def narrow_verifier(demo_data, tmp_path_factory):
    """A 32-wide verifier (one update of fairseq-train) on the same data and dictionary."""
    save = tmp_path_factory.mktemp("narrow")
    narrow = [("32" if value == "64" else "64" if value == "128" else value) for value in TINY_MODEL]
    run(["fairseq-train", demo_data["bin"], "--task", "translation", "--arch", "transformer", *narrow,
         *TRAIN_OPTS, "--criterion", "cross_entropy", "--max-update", "1", "--save-dir", save])
    return save / "checkpoint_last.pt"


@pytest.mark.parametrize("kind", ["chain_drafter", "feature_drafter", "tiny_drafter"])
def test_drafters_record_their_verifier(demo_data, tiny_verifier, kind, request):
    record = recorded(request.getfixturevalue(kind))
    assert record.source == str(tiny_verifier)
    assert (record.arch, record.encoder_embed_dim, record.decoder_embed_dim) == ("transformer", 64, 64)
    dictionary = Dictionary.load(str(demo_data["bin"] / "dict.de.txt"))
    assert record.differences(VerifierRecord.of_checkpoint(str(tiny_verifier), dictionary)) == []


def test_chain_drafter_next_to_its_verifier(demo_data, tiny_verifier, chain_drafter, caplog):
    caplog.set_level(logging.INFO, logger=LOADER)
    decode_first_batch(demo_data, tiny_verifier, chain_drafter)
    assert loader_messages(caplog, logging.WARNING) == []
    assert any(recorded(chain_drafter).fingerprint in m for m in loader_messages(caplog, logging.INFO))


def test_chain_drafter_next_to_another_verifier_warns(demo_data, chain_drafter, perturbed_verifier, caplog):
    caplog.set_level(logging.INFO, logger=LOADER)
    decode_first_batch(demo_data, perturbed_verifier, chain_drafter)  # still decodes: verification decides
    [warning] = loader_messages(caplog, logging.WARNING)
    dictionary = Dictionary.load(str(demo_data["bin"] / "dict.de.txt"))
    other = VerifierRecord.of_checkpoint(str(perturbed_verifier), dictionary)
    assert recorded(chain_drafter).fingerprint in warning and other.fingerprint in warning
    assert "fingerprinted weights differ" in warning and "--init-from-verifier" in warning


@pytest.mark.parametrize("kind", ["chain_drafter", "feature_drafter"])
def test_state_drafter_next_to_a_narrower_verifier_is_refused(demo_data, narrow_verifier, kind, request):
    cfg, task, models, _ = setup_generation(demo_data, narrow_verifier,
                                            ["--drafter-path", str(request.getfixturevalue(kind))])
    with pytest.raises(DrafterCheckpointError) as err:
        task.build_generator(models, cfg.generation)
    message = str(err.value)
    assert "64-wide decoder states" in message and "32-wide" in message
    assert "--init-from-verifier" in message and recorded(request.getfixturevalue(kind)).fingerprint in message


def test_narrower_verifier_is_refused_by_the_cli(demo_data, narrow_verifier, chain_drafter):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["fairseq-generate", str(demo_data["bin"]), "--user-dir", USER_DIR, "--task",
                           "specdec_translation", "--path", str(narrow_verifier), "--drafter-path",
                           str(chain_drafter), "--beam", "1", "--max-sentences", "2", "--gen-subset", "valid"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode != 0
    assert "DrafterCheckpointError" in proc.stderr and "32-wide" in proc.stderr
    assert "observe" not in proc.stderr  # refused before decoding, not a shape error inside it


def test_spec_drafter_sharing_the_encoder_next_to_a_narrower_verifier_warns(
        demo_data, narrow_verifier, shared_encoder_drafter, caplog):
    """The Spec-Drafter reads no verifier state: next to another encoder it runs its own (a
    copy of its verifier's), so another width costs acceptance, not correctness."""
    caplog.set_level(logging.INFO, logger=LOADER)
    decode_first_batch(demo_data, narrow_verifier, shared_encoder_drafter)
    [warning] = loader_messages(caplog, logging.WARNING)
    assert "decoder embed dim 64 vs 32" in warning and "encoder embed dim 64 vs 32" in warning


def test_drafter_without_a_record_loads_and_decodes(demo_data, tiny_verifier, chain_drafter, tmp_path, caplog):
    """Checkpoints written before drafters recorded their verifier."""
    state = torch.load(str(chain_drafter), map_location="cpu", weights_only=False)
    del state["task_state"][RECORD_KEY]
    old = tmp_path / "old_drafter.pt"
    torch.save(state, old)
    caplog.set_level(logging.INFO, logger=LOADER)
    decode_first_batch(demo_data, tiny_verifier, old)
    assert loader_messages(caplog, logging.WARNING) == []
    assert any("records no verifier" in m for m in loader_messages(caplog, logging.INFO))


def test_recorded_dictionary_when_the_drafters_data_is_gone(demo_data, tiny_verifier, chain_drafter, tmp_path):
    """Without the drafter's data folder the record's checksum still tells another dictionary."""
    state = torch.load(str(chain_drafter), map_location="cpu", weights_only=False)
    state["cfg"]["task"]["data"] = str(tmp_path / "gone")
    moved = tmp_path / "moved.pt"
    torch.save(state, moved)
    cfg, task, models, _ = setup_generation(demo_data, tiny_verifier, ["--drafter-path", str(moved)])
    task.build_generator(models, cfg.generation)  # same dictionary: accepted
    state["task_state"][RECORD_KEY]["dictionary_checksum"] = "0" * 12
    torch.save(state, moved)
    cfg, task, models, _ = setup_generation(demo_data, tiny_verifier, ["--drafter-path", str(moved)])
    with pytest.raises(DrafterCheckpointError, match="dictionaries differ"):
        task.build_generator(models, cfg.generation)
