"""One record per trained drafter kind, looked up in one place.

A kind is its fairseq model class (registered by ``fairseq_specdec.models``), the prefix of
its architectures' names, the criterion that trains it, how its training batch is built,
what it reads at decoding, and its proposer (the ``base.Drafter`` the speculative
generator drives). The task (training batches, the criterion check, drafter-only
decoding), the drafter loader, ``build_generator`` and the benchmark ask ``kind_of(model)``
instead of testing classes in a fixed order. Adding a kind: its model (``models/``), its
criterion (``criterions/``), its proposer (``drafting/``), and one ``DrafterKind`` in
``KINDS`` (see docs/architecture.md).
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from torch import Tensor

from fairseq_specdec.drafting.chain import ChainDrafter, StaticChainDrafter
from fairseq_specdec.drafting.base import NARDrafter
from fairseq_specdec.drafting.feature import FeatureDrafter
from fairseq_specdec.verification.verifier import check_verifier
from fairseq_specdec.models.chain_drafter import SpecChainDrafterModel
from fairseq_specdec.models.feature_drafter import SpecFeatureDrafterModel
from fairseq_specdec.models.specdec_drafter import SpecDrafterModel


@dataclass(frozen=True)
class DrafterKind:
    name: str  # what messages call it
    model: type  # its fairseq model class
    arch_prefix: str  # the names of its architectures start with this
    criterion: str  # the registered criterion that trains it
    reads_verifier_states: bool  # trained on, and drafting from, the verifier's states (never decodes alone)
    drafts_at_cuts: bool  # its training batch carries k and the cut points to draft after
    draft_vocab: bool  # --draft-vocab shortlists its tokens
    proposer: Callable[..., Any]  # (model, tgt_dict, verifier, graphs, shortlist) -> a base.Drafter
    max_block_size: Callable[[Any], Optional[int]] = lambda model: None  # the most k it can draft (None: any)

    @property
    def batch(self) -> str:
        """Its training batch, a layout of ``training.batches.BUILDERS``: what it reads decides it."""
        return "verifier_states" if self.reads_verifier_states else "prefix_block"


def _nar_proposer(model, tgt_dict, verifier, graphs, shortlist):
    return NARDrafter(model, tgt_dict, verifier=verifier)


def _feature_proposer(model, tgt_dict, verifier, graphs, shortlist):
    return FeatureDrafter(model, tgt_dict, verifier=verifier)


def _chain_proposer(model, tgt_dict, verifier, graphs, shortlist):
    # with graphs (static_rows.GraphOptions): static buffers and CUDA graphs (the other
    # kinds' shapes change every iteration)
    if graphs is not None:
        return StaticChainDrafter(model, tgt_dict, verifier=verifier, shortlist=shortlist, options=graphs)
    return ChainDrafter(model, tgt_dict, verifier=verifier, shortlist=shortlist)


KINDS: Dict[type, DrafterKind] = {kind.model: kind for kind in (
    DrafterKind("Spec-Drafter", SpecDrafterModel, "specdec_drafter", "specdec_glancing",
                reads_verifier_states=False, drafts_at_cuts=False, draft_vocab=False,
                proposer=_nar_proposer),
    DrafterKind("feature drafter", SpecFeatureDrafterModel, "specdec_drafter_feature", "specdec_feature",
                reads_verifier_states=True, drafts_at_cuts=True, draft_vocab=False,
                proposer=_feature_proposer, max_block_size=lambda model: model.decoder.max_block_size),
    DrafterKind("chain drafter", SpecChainDrafterModel, "specdec_drafter_chain", "specdec_chain",
                reads_verifier_states=True, drafts_at_cuts=False, draft_vocab=True,
                proposer=_chain_proposer),
)}


def kind_of(model) -> Optional[DrafterKind]:
    """The kind of a drafter model (its most specific registered class), or None for any
    other model (a verifier)."""
    for cls in type(model).__mro__:
        if cls in KINDS:
            return KINDS[cls]
    return None


def make_proposer(drafter_model, tgt_dict, verifier, graphs=None, shortlist: Optional[Tensor] = None):
    """The drafting side for a trained drafter checkpoint's model, next to ``verifier``
    (``graphs``: static buffers and CUDA graphs where the kind has them; ``shortlist``:
    --draft-vocab's tokens)."""
    kind = kind_of(drafter_model)
    if kind is None:
        raise ValueError(f"a {type(drafter_model).__name__} is not a drafter (specdec_drafter_*)")
    if verifier is not None:
        check_verifier(verifier)  # before a drafter reads the verifier's encoder or decoder
    if shortlist is not None:
        require_draft_vocab(drafter_model)
    return kind.proposer(drafter_model, tgt_dict, verifier, graphs, shortlist)


def require_draft_vocab(drafter_model) -> None:
    """--draft-vocab shortlists a drafter's tokens: refuse a kind without it (or no drafter)."""
    kind = None if drafter_model is None else kind_of(drafter_model)
    if kind is None or not kind.draft_vocab:
        name = kind.name if kind is not None else type(drafter_model).__name__
        what = "no drafter is given" if drafter_model is None else f"this drafter is a {name}"
        raise ValueError(f"--draft-vocab drafts the chain drafter's tokens (specdec_drafter_chain*); {what}: "
                         f"give a chain drafter or drop --draft-vocab")


def check_criterion(model, criterion) -> None:
    """Refuse training a drafter with a criterion that does not train its kind."""
    from fairseq.criterions import CRITERION_REGISTRY

    kind = kind_of(model)
    expected = None if kind is None else CRITERION_REGISTRY.get(kind.criterion)
    if expected is not None and not isinstance(criterion, expected):
        raise ValueError(f"--arch {model.args.arch} is a {kind.name}, which --criterion {kind.criterion} trains; "
                         f"got a {type(criterion).__name__}: pass --criterion {kind.criterion}")
