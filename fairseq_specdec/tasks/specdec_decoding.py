"""The decoding side every SpecDec task shares: the decoding options, and the
``build_generator`` that turns them into the plugin's generators.

``SpecDecDecoding`` is a mixin for a fairseq translation task: placed before the task
class (``class T(SpecDecDecoding, TranslationTask)``), it reads the options of
``SpecDecDecodingConfig`` from the task's ``cfg`` (a dataclass config, or the argparse
namespace of a task such as ``translation_multi_simple_epoch`` that adds them with
``add_decoding_args``) and builds the speculative, lean-greedy or drafter-only
generator, or the task's own when none is asked for."""
import atexit
import logging
from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import FairseqDataclass
from fairseq.dataclass.utils import gen_parser_from_dataclass

from fairseq_specdec.drafting.block_size import (
    DEFAULT_BLOCK_SIZE, check_block_size, decoding_block_size, ngram_block_size, trained_block_size)
from fairseq_specdec.drafting.draft_vocab import load_shortlist
from fairseq_specdec.drafting.kinds import kind_of
from fairseq_specdec.drafting.loading import load_drafter, place_like
from fairseq_specdec.decoding.generators import (
    build_generator, build_proposer, check_generation_options, search_options)
from fairseq_specdec.decoding.plan import DecodingPlan
from fairseq_specdec.drafting.ngram_data import build_index
from fairseq_specdec.verification.speculative_sampling import sampling_rule
from fairseq_specdec.verification.static_rows import GraphOptions
from fairseq_specdec.decoding.stats import DecodingStats

@dataclass
class SpecDecDecodingConfig(FairseqDataclass):
    block_size: Optional[int] = field(
        default=None,
        metadata={"help": f"k: tokens the drafter predicts per forward. Training: default {DEFAULT_BLOCK_SIZE}. "
                  "Decoding: default the k the drafter checkpoint was trained with; a different value "
                  "overrides it (with a warning)"},
    )
    drafter_path: Optional[str] = field(
        default=None,
        metadata={"help": "decode speculatively with this drafter checkpoint (fairseq-train --task "
                  "specdec_translation --arch specdec_drafter_*); without it, generation is stock fairseq"},
    )
    beta: int = field(
        default=1, metadata={"help": "accept a draft only if it is in the verifier's top-beta (1 = lossless greedy)"}
    )
    tau: float = field(
        default=1.0,
        metadata={"help": "and only if its log-probability is within tau of the verifier's top-1 (used when beta > 1)"},
    )
    specdec_profile: bool = field(
        default=False,
        metadata={"help": "time the drafter, the verifier and the bookkeeping separately and log the split "
                  "(on CUDA this synchronizes the device several times per iteration)"},
    )
    ngram_drafter: bool = field(
        default=False,
        metadata={"help": "decode speculatively with a model-free n-gram drafter (see drafting/ngram.py): "
                  "alone, or combined with the trained drafter when --drafter-path is also given"},
    )
    ngram_data: Optional[str] = field(
        default=None,
        metadata={"help": "binarized data directory whose train targets feed the n-gram index "
                  "(default: this task's data, the first of its paths)"},
    )
    ngram_order: int = field(
        default=4, metadata={"help": "longest context (in tokens) the n-gram drafter looks up"}
    )
    lean_greedy: bool = field(
        default=False,
        metadata={"help": "without a drafter, decode --beam 1 with the plugin's lean greedy (the verifier's "
                  "preallocated cache and lean forward): fairseq's greedy output, faster"},
    )
    draft_vocab: int = field(
        default=0,
        metadata={"help": "the chain drafter drafts among the N most frequent target tokens of the train data "
                  "(each chained step scores N tokens instead of the whole vocabulary; verification still "
                  "scores all); 0 = the whole vocabulary"},
    )
    cuda_graphs: bool = field(
        default=False,
        metadata={"help": "with --lean-greedy or a drafter, on a GPU: record the verifier's block forward (and the "
                  "chain drafter's forwards) as CUDA graphs, once per shape, and replay them; same output"},
    )
    fixed_block: bool = field(
        default=False,
        metadata={"help": "draft exactly --block-size tokens every iteration (the paper's rule); by default the "
                  "drafter drafts up to that many, as many as its calibrated confidence and the measured cost "
                  "of drafting and verifying say pay on this machine, none (a greedy step) included"},
    )


def add_decoding_args(parser) -> None:
    """The decoding options, for a task that declares its options with ``add_args``."""
    gen_parser_from_dataclass(parser, SpecDecDecodingConfig())


class SpecDecDecoding:
    """Mixin: SpecDec decoding for the translation task it is mixed into (see the module's
    docstring). The task calls ``init_decoding`` from its ``__init__`` and returns
    ``build_specdec_generator`` from its ``build_generator``."""

    def init_decoding(self) -> None:
        cfg = self.cfg
        check_block_size(cfg.block_size)
        if cfg.ngram_order < 1:
            raise ValueError(f"--ngram-order must be >= 1, got {cfg.ngram_order}")
        if cfg.draft_vocab < 0:  # before --draft-vocab N counts the train data
            raise ValueError(f"--draft-vocab must be >= 1 (or 0 for the whole vocabulary), got {cfg.draft_vocab}")
        self.decoding_stats = DecodingStats(profile=cfg.specdec_profile)
        self._drafters = {}
        self._drafter_block_sizes = {}  # --drafter-path -> the k decoding uses
        self._ngram_index = None  # built on first use, once per task
        self._shortlist = None  # --draft-vocab's tokens, counted on first use
        self._proposer = None  # (verifier, drafter model or None, proposer) of the last build_generator
        self._stats_logged_at_exit = False

    @property
    def decodes_speculatively(self) -> bool:
        """Whether a verifier given as --path decodes with SpecDec (a drafter is given)."""
        return self.cfg.drafter_path is not None or self.cfg.ngram_drafter

    def build_specdec_generator(self, models, args, stock, prefix_allowed_tokens_fn=None, extra_gen_cls_kwargs=None):
        """The generator the options ask for; ``stock()`` builds the task's own when they ask
        for none (no drafter, no --lean-greedy). ``extra_gen_cls_kwargs``: the task's
        ``SequenceGenerator`` options (``symbols_to_strip_from_output``) for every generator."""
        plan = self.plan_decoding(models, args, prefix_allowed_tokens_fn)
        if not (plan.speculative or plan.lean_greedy or kind_of(models[0]) is not None):
            plan.check_models(models)  # what fairseq's own search refuses (--cuda-graphs)
            return stock()
        search = {**search_options(args), **(extra_gen_cls_kwargs or {})}
        return build_generator(models, self.target_dictionary, plan, search, stats=self.decoding_stats)

    def plan_decoding(self, models, args, prefix_allowed_tokens_fn=None) -> DecodingPlan:
        """The task's options as a checked ``DecodingPlan`` for ``models`` (loading the drafter,
        and with it its k, when one is given)."""
        drafter_only = kind_of(models[0]) is not None
        speculative = self.decodes_speculatively
        if drafter_only and speculative:  # before the drafter loads against a drafter as its verifier
            given = "--drafter-path" if self.cfg.drafter_path is not None else "--ngram-drafter"
            raise ValueError(f"--path holds a drafter ({models[0].args.arch}) and {given} asks for another: SpecDec "
                             f"verifies with the model of --path. Give the verifier as --path, or drop {given} to "
                             "decode with the drafter alone")
        if drafter_only or speculative or self.cfg.lean_greedy:
            what = "drafter-only decoding" if drafter_only else "SpecDec" if speculative else "--lean-greedy"
            check_generation_options(args, prefix_allowed_tokens_fn, what=what,
                                     supported=() if drafter_only else ("sampling",))
        proposer = drafter = None
        block_size = 0
        if drafter_only:
            block_size = decoding_block_size(self.cfg.block_size, trained_block_size(models[0]))
        elif speculative:
            self.log_stats_at_exit()
            proposer = self.proposer_for(models[0])
            if self.cfg.drafter_path is None:
                block_size = ngram_block_size(self.cfg.block_size)
            else:
                drafter = self.drafter_for(models[0])
                block_size = self._drafter_block_sizes[self.cfg.drafter_path]
        return DecodingPlan(beam=args.beam, lean_greedy=self.cfg.lean_greedy, proposer=proposer,
                            block_size=block_size, beta=self.cfg.beta, tau=self.cfg.tau, graphs=self.graph_options(),
                            adaptive=not self.cfg.fixed_block, sampling=sampling_rule(args), drafter=drafter,
                            draft_vocab=self.cfg.draft_vocab)

    def drafter_for(self, verifier):
        """The drafter checkpoint loaded once, on the verifier's device and dtype."""
        path = self.cfg.drafter_path
        if path not in self._drafters:
            self._drafters[path] = load_drafter(path, self, verifier)
            # k, decided (and any difference from the drafter's said) once per drafter
            self._drafter_block_sizes[path] = decoding_block_size(self.cfg.block_size,
                                                                  trained_block_size(self._drafters[path]))
        return place_like(self._drafters[path], verifier)

    def ngram_index(self):
        """The n-gram index over the train targets of --ngram-data (default: the task's data), built once."""
        if self._ngram_index is None:
            data = self.cfg.ngram_data or self.cfg.data.split(":")[0]
            self._ngram_index = build_index(data, self.cfg.source_lang, self.cfg.target_lang,
                                            self.target_dictionary, self.cfg.ngram_order,
                                            dataset_impl=self.cfg.dataset_impl)
        return self._ngram_index

    def proposer_for(self, verifier):
        """The drafting side for this verifier, built once: the trained drafter (--drafter-path),
        the n-gram drafter (--ngram-drafter), or both combined. fairseq's hub builds a
        generator for every ``translate`` call, and deciding whether the drafter may reuse
        the verifier's encoder compares every encoder tensor. The cache holds the verifier
        itself, so a new verifier object never inherits another one's decision (and the
        decision only steers drafting: beta=1 output is greedy's either way)."""
        # placed like the verifier, which moves both together
        drafter = self.drafter_for(verifier) if self.cfg.drafter_path is not None else None
        cached = self._proposer
        if cached is None or cached[0] is not verifier or cached[1] is not drafter:
            self._proposer = (verifier, drafter, self.build_proposer(verifier, drafter))
        return self._proposer[2]

    def build_proposer(self, verifier, drafter):
        ngram_index = self.ngram_index() if self.cfg.ngram_drafter else None
        return build_proposer(drafter, verifier, self.target_dictionary, ngram_index, self.graph_options(),
                              self.draft_shortlist())

    def draft_shortlist(self):
        """--draft-vocab's tokens (counted once over the train targets of the task's data), or None."""
        if self.cfg.draft_vocab and self._shortlist is None:
            self._shortlist = load_shortlist(self.cfg.data.split(":")[0], self.cfg.source_lang, self.cfg.target_lang,
                                             self.target_dictionary, self.cfg.draft_vocab, self.cfg.dataset_impl,
                                             data_flag="the data directory")
        return self._shortlist

    def graph_options(self) -> Optional[GraphOptions]:
        return GraphOptions() if self.cfg.cuda_graphs else None

    def log_stats_at_exit(self):
        """fairseq-generate/-interactive have no end-of-run hook: summarize at exit."""
        if not self._stats_logged_at_exit:
            atexit.register(log_quietly, self.decoding_stats)
            self._stats_logged_at_exit = True


def log_quietly(stats: DecodingStats) -> None:
    """Log the summary; at interpreter exit a host (pytest, a notebook) may have closed the
    log's stream already, and a failed best-effort summary must not print a traceback."""
    raise_exceptions, logging.raiseExceptions = logging.raiseExceptions, False
    try:
        stats.log()
    finally:
        logging.raiseExceptions = raise_exceptions
