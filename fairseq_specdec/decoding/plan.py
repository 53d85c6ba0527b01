"""The decoding plan: what to decode with, every option checked once, in one frozen record.

The task (``tasks/specdec_decoding.py``) and the benchmark's modes make a ``DecodingPlan``;
``build_generator`` (``decoding/generators.py``) checks it against the models it is given
(``check_models``) and turns it into a generator, which keeps it as ``generator.plan``.
The checks that need no model run when the plan is made; nothing else repeats them.
"""
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from fairseq_specdec.drafting.kinds import kind_of, require_draft_vocab
from fairseq_specdec.verification.speculative_sampling import SamplingRule
from fairseq_specdec.verification.static_rows import GraphOptions


@dataclass(frozen=True)
class DecodingPlan:
    """One decoding's options; ``build_generator`` picks the generator from them."""

    beam: int = 1  # fairseq's beam size (stock search only)
    lean_greedy: bool = False  # greedy through the verifier's lean forward (beam must be 1)
    proposer: Optional[Any] = None  # a drafter (``drafting.base.Drafter``): decode speculatively
    block_size: int = 0  # k: drafts per iteration (SpecDec and drafter-only decoding)
    beta: int = 1  # SpecDec acceptance: top-beta ...
    tau: float = 1.0  # ... and within tau of the top-1
    graphs: Optional[GraphOptions] = None  # lean greedy and SpecDec: static buffers and CUDA graphs
    adaptive: bool = False  # SpecDec: draft as many of the k as pay (drafting.policy), else exactly k
    sampling: Optional[SamplingRule] = None  # --sampling: sample (SpecDec, lean greedy, stock search)
    drafter: Optional[Any] = None  # the trained drafter model the proposer drafts with (None: n-gram, oracle)
    draft_vocab: int = 0  # --draft-vocab: the chain drafter drafts among this many tokens (0: all)

    def __post_init__(self):
        check_options(self)

    @property
    def speculative(self) -> bool:
        return self.proposer is not None

    def check_models(self, models: Sequence[Any]) -> None:
        """Refuse this plan for ``models`` (the verifier, or a Spec-Drafter decoding alone)."""
        kind = kind_of(models[0])
        if kind is not None:
            check_drafter_only(self, models[0], kind)
        elif self.speculative and len(models) != 1:
            raise ValueError(f"SpecDec verifies with one model; got an ensemble of {len(models)}")
        elif not (self.speculative or self.lean_greedy) and self.graphs is not None:
            raise ValueError("--cuda-graphs runs the plugin's own decoding: add --lean-greedy, --drafter-path "
                             "or --ngram-drafter")


def check_options(plan: DecodingPlan) -> None:
    """The checks that need no model."""
    if plan.beam < 1:
        raise ValueError(f"--beam must be >= 1, got {plan.beam}")
    if plan.block_size < 0:
        raise ValueError(f"--block-size must be >= 1, got {plan.block_size}")
    if plan.speculative:
        check_speculative(plan)
    elif plan.lean_greedy and plan.beam != 1:
        what = "samples one hypothesis per sentence" if plan.sampling else "decodes greedily"
        raise ValueError(f"--lean-greedy {what}: use --beam 1 (got --beam {plan.beam})")
    if plan.draft_vocab < 0:
        raise ValueError(f"--draft-vocab must be >= 1 (or 0 for the whole vocabulary), got {plan.draft_vocab}")
    if plan.draft_vocab and plan.drafter is None:
        raise ValueError("--draft-vocab sets the chain drafter's vocabulary: give the verifier as --path and a "
                         "chain drafter as --drafter-path, or drop --draft-vocab")
    if plan.draft_vocab:
        require_draft_vocab(plan.drafter)


def check_speculative(plan: DecodingPlan) -> None:
    if plan.beam != 1:
        raise ValueError(beam_error(plan.beam, "SpecDec", sampling=plan.sampling is not None))
    if plan.block_size < 1:
        raise ValueError(f"--block-size must be >= 1, got {plan.block_size}")
    if plan.beta < 1:
        raise ValueError(f"--beta must be >= 1 (1 = lossless), got {plan.beta}")
    if plan.tau < 0:
        raise ValueError(f"--tau must be >= 0, got {plan.tau}")
    if plan.sampling is not None and (plan.beta != 1 or plan.tau != 1.0):
        raise ValueError(f"--beta {plan.beta} --tau {plan.tau}: relaxed acceptance is a greedy rule; with "
                         "--sampling a draft is accepted with the verifier's probability, which keeps fairseq's "
                         "sampling distribution exactly. Drop --beta/--tau (or --sampling)")
    if plan.drafter is not None:
        check_drafter_block_size(plan.drafter, plan.block_size)


def check_drafter_only(plan: DecodingPlan, drafter, kind) -> None:
    """A drafter given as the model to decode with: it drafts alone, k tokens an iteration."""
    if kind.reads_verifier_states:
        raise ValueError(f"a {kind.name} (--arch {drafter.args.arch}) drafts from its verifier's states and "
                         "cannot decode alone: pass the verifier as --path and this checkpoint as --drafter-path")
    if plan.speculative:
        raise ValueError(f"the model to decode with is a drafter ({drafter.args.arch}) and a drafter is given "
                         "too: SpecDec verifies with the model of --path. Give the verifier as --path")
    if plan.beam != 1:
        raise ValueError(beam_error(plan.beam, "drafter-only decoding", sampling=plan.sampling is not None))
    if plan.sampling is not None:
        raise ValueError("--sampling is not supported with drafter-only decoding; sample with the verifier as "
                         "--path (and the drafter as --drafter-path)")
    if plan.graphs is not None:
        raise ValueError("--cuda-graphs is not available for drafter-only decoding (its input grows every "
                         "iteration); decode with the verifier as --path and the drafter as --drafter-path")
    if plan.block_size < 1:
        raise ValueError(f"--block-size must be >= 1, got {plan.block_size}")


def check_drafter_block_size(drafter_model, k: int) -> None:
    """Refuse a k the drafter cannot draft, before decoding starts (a feature drafter's
    offset embedding holds at most ``--max-block-size`` queries: its kind's ``max_block_size``)."""
    kind = kind_of(drafter_model)
    limit = None if kind is None else kind.max_block_size(drafter_model)
    if limit is not None and k > limit:
        raise ValueError(f"--block-size {k} exceeds this {kind.name}'s --max-block-size {limit} (the most "
                         f"queries it was trained to draft): decode with --block-size <= {limit}, or leave "
                         f"--block-size out to use the drafter's own k")


def beam_error(beam: int, what: str, sampling: bool = False) -> str:
    """The message for --beam N (N > 1) where the plugin decodes one hypothesis per sentence."""
    if sampling:
        return (f"--beam {beam} --sampling: fairseq would draw {beam} samples per sentence, {what} draws one "
                f"(fairseq-generate and -interactive default to --beam 5). Pass --beam 1 to sample one "
                f"translation per sentence, exactly as fairseq's --sampling --beam 1 would")
    return (f"--beam {beam}: {what} decodes one hypothesis per sentence, greedily (speculative beam search "
            f"is not implemented), and would not honour it (fairseq-generate and -interactive default to "
            f"--beam 5). Pass --beam 1 for output identical to the verifier's greedy, or --beam 1 --beta B "
            f"--tau T for relaxed acceptance; decode without the drafter for beam search")
