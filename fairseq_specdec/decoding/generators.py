"""One function builds every generator the plugin runs, and the option checks they share.

fairseq's own search (greedy or beam), the lean greedy (``LeanGreedyGenerator``), SpecDec
with any drafter (``SpeculativeGenerator``) and drafter-only decoding
(``DrafterGenerator``, when the model itself is a Spec-Drafter). The task's
``build_generator`` (what fairseq-generate, fairseq-interactive and the hub call) and the
benchmark's modes both go through ``build_generator`` below, so the benchmark times the
generators users run.
"""
from dataclasses import dataclass
from typing import Any, Dict, Optional

from fairseq.search import Sampling
from fairseq.sequence_generator import SequenceGenerator
from torch import Tensor

from fairseq_specdec.decoding.drafter_generator import DrafterGenerator
from fairseq_specdec.drafting.kinds import kind_of, make_proposer, require_draft_vocab
from fairseq_specdec.drafting.ngram import with_ngram_drafter
from fairseq_specdec.drafting.ngram_index import NGramIndex
from fairseq_specdec.decoding.speculative_generator import LeanGreedyGenerator, SpeculativeGenerator
from fairseq_specdec.verification.speculative_sampling import SamplingRule
from fairseq_specdec.verification.static_rows import GraphOptions
from fairseq_specdec.decoding.stats import DecodingStats


@dataclass
class Decoding:
    """What to decode with; ``build_generator`` picks the generator from it."""

    beam: int = 1  # fairseq's beam size (stock search only)
    lean_greedy: bool = False  # greedy through the verifier's lean forward (beam must be 1)
    proposer: Optional[Any] = None  # a drafter (``drafting.base.Drafter``): decode speculatively
    block_size: int = 0  # k: drafts per iteration (SpecDec and drafter-only decoding)
    beta: int = 1  # SpecDec acceptance: top-beta ...
    tau: float = 1.0  # ... and within tau of the top-1
    graphs: Optional[GraphOptions] = None  # lean greedy and SpecDec: static buffers and CUDA graphs
    adaptive: bool = False  # SpecDec: draft as many of the k as pay (drafting.policy), else exactly k
    sampling: Optional[SamplingRule] = None  # --sampling: sample (SpecDec, lean greedy, stock search)


def build_generator(models, tgt_dict, decoding: Decoding, search: Dict[str, Any],
                    stats: Optional[DecodingStats] = None):
    """The generator for ``models`` (a verifier, or a Spec-Drafter for drafter-only
    decoding); ``search`` holds ``SequenceGenerator``'s length and score options."""
    if kind_of(models[0]) is not None:  # drafter-only decoding
        if decoding.sampling is not None:
            raise ValueError("--sampling is not supported with drafter-only decoding; sample with the verifier as "
                             "--path (and the drafter as --drafter-path)")
        if decoding.graphs is not None:
            raise ValueError("--cuda-graphs is not available for drafter-only decoding (its input grows every "
                             "iteration); decode with the verifier as --path and the drafter as --drafter-path")
        return DrafterGenerator(models, tgt_dict, block_size=decoding.block_size, stats=stats, **search)
    if decoding.proposer is not None:
        return SpeculativeGenerator(models, tgt_dict, decoding.proposer, block_size=decoding.block_size,
                                    beta=decoding.beta, tau=decoding.tau, stats=stats, graphs=decoding.graphs,
                                    adaptive=decoding.adaptive, sampling=decoding.sampling, **search)
    if decoding.lean_greedy:
        if decoding.beam != 1:
            what = "samples one hypothesis per sentence" if decoding.sampling else "decodes greedily"
            raise ValueError(f"--lean-greedy {what}: use --beam 1 (got --beam {decoding.beam})")
        return LeanGreedyGenerator(models, tgt_dict, stats=stats, graphs=decoding.graphs, sampling=decoding.sampling,
                                   **search)
    refuse_graphs_for_stock_search(decoding.graphs)
    rule = decoding.sampling
    strategy = None if rule is None else Sampling(tgt_dict, rule.topk, rule.topp)
    return SequenceGenerator(models, tgt_dict, beam_size=decoding.beam, search_strategy=strategy, **search)


def refuse_graphs_for_stock_search(graphs: Optional[GraphOptions]) -> None:
    """fairseq's own search has no graphed path: --cuda-graphs needs the plugin's decoding."""
    if graphs is not None:
        raise ValueError("--cuda-graphs runs the plugin's own decoding: add --lean-greedy, --drafter-path "
                         "or --ngram-drafter")


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
