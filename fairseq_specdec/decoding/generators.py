"""One function builds every generator the plugin runs from a checked ``DecodingPlan``.

fairseq's own search (greedy or beam), the lean greedy (``LeanGreedyGenerator``), SpecDec
with any drafter (``SpeculativeGenerator``) and drafter-only decoding
(``DrafterGenerator``, when the model itself is a Spec-Drafter). The task's
``build_generator`` (what fairseq-generate, fairseq-interactive and the hub call) and the
benchmark's modes both go through ``build_generator`` below, so the benchmark times the
generators users run.
"""
from typing import Any, Dict, Optional

from fairseq.search import Sampling
from fairseq.sequence_generator import SequenceGenerator
from torch import Tensor

from fairseq_specdec.decoding.drafter_generator import DrafterGenerator
from fairseq_specdec.decoding.plan import DecodingPlan
from fairseq_specdec.drafting.kinds import kind_of, make_proposer, require_draft_vocab
from fairseq_specdec.drafting.ngram import with_ngram_drafter
from fairseq_specdec.drafting.ngram_index import NGramIndex
from fairseq_specdec.decoding.speculative_generator import LeanGreedyGenerator, SpeculativeGenerator
from fairseq_specdec.verification.static_rows import GraphOptions
from fairseq_specdec.decoding.stats import DecodingStats


def build_generator(models, tgt_dict, plan: DecodingPlan, search: Dict[str, Any],
                    stats: Optional[DecodingStats] = None):
    """The generator of ``plan`` for ``models`` (a verifier, or a Spec-Drafter for
    drafter-only decoding); ``search`` holds ``SequenceGenerator``'s length and score
    options. The generator keeps the plan as ``.plan``."""
    plan.check_models(models)
    generator = _generator(models, tgt_dict, plan, search, stats)
    generator.plan = plan
    return generator


def _generator(models, tgt_dict, plan: DecodingPlan, search: Dict[str, Any], stats: Optional[DecodingStats]):
    if kind_of(models[0]) is not None:  # drafter-only decoding
        return DrafterGenerator(models, tgt_dict, block_size=plan.block_size, stats=stats, **search)
    if plan.proposer is not None:
        return SpeculativeGenerator(models, tgt_dict, plan.proposer, block_size=plan.block_size,
                                    beta=plan.beta, tau=plan.tau, stats=stats, graphs=plan.graphs,
                                    adaptive=plan.adaptive, sampling=plan.sampling, **search)
    if plan.lean_greedy:
        return LeanGreedyGenerator(models, tgt_dict, stats=stats, graphs=plan.graphs, sampling=plan.sampling,
                                   **search)
    rule = plan.sampling
    strategy = None if rule is None else Sampling(tgt_dict, rule.topk, rule.topp)
    return SequenceGenerator(models, tgt_dict, beam_size=plan.beam, search_strategy=strategy, **search)


def build_proposer(drafter_model, verifier, tgt_dict, ngram_index: Optional[NGramIndex] = None,
                   graphs: Optional[GraphOptions] = None, shortlist: Optional[Tensor] = None):
    """The drafting side: the trained drafter's proposer (``drafter_model`` may be None),
    the n-gram drafter over ``ngram_index``, or both combined."""
    if shortlist is not None and drafter_model is None:
        require_draft_vocab(drafter_model)
    trained = (make_proposer(drafter_model, tgt_dict, verifier, graphs, shortlist)
               if drafter_model is not None else None)
    if ngram_index is None:
        if trained is None:
            raise ValueError("nothing to draft with: give a drafter checkpoint or an n-gram index")
        return trained
    return with_ngram_drafter(trained, ngram_index, tgt_dict)


def search_options(args) -> Dict[str, Any]:
    """``SequenceGenerator``'s length, score and n-gram options from fairseq's generation options
    (the forced prefix, --prefix-size, comes with each batch as ``prefix_tokens``)."""
    return dict(
        max_len_a=args.max_len_a,
        max_len_b=args.max_len_b,
        min_len=args.min_len,
        normalize_scores=not args.unnormalized,
        len_penalty=args.lenpen,
        unk_penalty=args.unkpen,
        temperature=args.temperature,
        no_repeat_ngram_size=args.no_repeat_ngram_size,
    )


UNSUPPORTED = {
    "sampling": "--sampling",  # with drafter-only decoding (SpecDec and --lean-greedy sample: ``supported``)
    "diverse_beam_groups": "--diverse-beam-groups",
    "constraints": "--constraints",
    "print_alignment": "--print-alignment",
    "score_reference": "--score-reference",
    "match_source_len": "--match-source-len",  # SequenceGenerator's own options the task does not pass on:
    "lm_path": "--lm-path",  # refused here rather than silently ignored
}


def check_generation_options(args, prefix_allowed_tokens_fn, what: str, supported=()) -> None:
    """Refuse fairseq's generation options that the plugin's generators do not implement
    (those of ``UNSUPPORTED`` not named in ``supported``, which this generator implements)."""
    for name, flag in UNSUPPORTED.items():
        if name in supported:
            continue
        value = getattr(args, name)
        if value not in (None, False, 0, -1, "", "none"):
            raise ValueError(f"{flag} is not supported with {what}; remove it")
    if args.nbest != 1:
        raise ValueError(f"--nbest {args.nbest}: {what} returns one hypothesis per sentence; use --nbest 1")
    if prefix_allowed_tokens_fn is not None:
        raise ValueError(f"prefix_allowed_tokens_fn is not supported with {what}")
