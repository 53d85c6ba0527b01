"""The registry of drafter kinds against fairseq's own registries: every drafter
architecture the plugin registers belongs to exactly the kind of its model class, each
kind's criterion is registered, and a criterion of another kind is refused by name."""
from types import SimpleNamespace

import pytest
from fairseq.criterions import CRITERION_REGISTRY
from fairseq.models import ARCH_MODEL_REGISTRY
from fairseq.models.transformer import TransformerModel

import fairseq_specdec  # noqa: F401  (registers the plugin's models and criterions)
from fairseq_specdec.drafting.kinds import KINDS, check_criterion, kind_of, require_draft_vocab


def bare(cls):
    """An instance of a model class without building it (the registry reads only its class)."""
    model = cls.__new__(cls)
    object.__setattr__(model, "args", SimpleNamespace(arch="specdec_drafter_x"))
    return model


def test_every_drafter_architecture_has_its_models_kind():
    drafter_archs = {arch: cls for arch, cls in ARCH_MODEL_REGISTRY.items() if arch.startswith("specdec_drafter")}
    assert len(drafter_archs) >= 3
    for arch, cls in drafter_archs.items():
        kind = kind_of(bare(cls))
        assert kind is not None and kind.model is cls, arch
        longest = max((k for k in KINDS.values() if arch.startswith(k.arch_prefix)), key=lambda k: len(k.arch_prefix))
        assert longest is kind, f"{arch}: named like a {longest.name}, built as a {kind.name}"
    assert kind_of(bare(TransformerModel)) is None  # a verifier is no drafter


def test_each_kinds_training_batch_has_a_builder():
    from fairseq_specdec.training.batches import BUILDERS

    assert {kind.name: kind.batch for kind in KINDS.values()} == {
        "Spec-Drafter": "prefix_block", "feature drafter": "verifier_states", "chain drafter": "verifier_states"}
    assert {kind.batch for kind in KINDS.values()} <= set(BUILDERS)


def test_each_kinds_criterion_is_registered_and_another_is_refused():
    for kind in KINDS.values():
        assert kind.criterion in CRITERION_REGISTRY
    chain = next(k for k in KINDS.values() if k.draft_vocab)
    glancing = next(k for k in KINDS.values() if not k.reads_verifier_states)
    wrong = CRITERION_REGISTRY[glancing.criterion].__new__(CRITERION_REGISTRY[glancing.criterion])
    with pytest.raises(ValueError, match=f"--criterion {chain.criterion}"):
        check_criterion(bare(chain.model), wrong)
    right = CRITERION_REGISTRY[chain.criterion].__new__(CRITERION_REGISTRY[chain.criterion])
    check_criterion(bare(chain.model), right)
    with pytest.raises(ValueError, match="this drafter is a Spec-Drafter"):
        require_draft_vocab(bare(glancing.model))
