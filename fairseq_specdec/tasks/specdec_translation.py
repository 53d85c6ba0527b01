"""The ``specdec_translation`` task: trains the Spec-Drafter on k-token blocks and
builds the speculative (or drafter-only) generator for decoding."""
import atexit
import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from fairseq_specdec.blocks import make_block_batch, sample_cut_points
from fairseq_specdec.decoding.block_size import (
    DEFAULT_BLOCK_SIZE, check_block_size, check_drafter_block_size, decoding_block_size, ngram_block_size,
    trained_block_size)
from fairseq_specdec.decoding.draft_vocab import load_shortlist
from fairseq_specdec.decoding.drafter_loading import load_drafter, place_like
from fairseq_specdec.decoding.generators import (
    Decoding, build_generator, build_proposer, check_generation_options, refuse_graphs_for_stock_search,
    search_options)
from fairseq_specdec.decoding.ngram_data import build_index
from fairseq_specdec.decoding.speculative_sampling import sampling_rule
from fairseq_specdec.decoding.static_rows import GraphOptions
from fairseq_specdec.decoding.stats import DecodingStats
from fairseq_specdec.feature_blocks import pick_cuts
from fairseq_specdec.models.feature_drafter import SpecFeatureDrafterModel, StateDrafterModel
from fairseq_specdec.models.specdec_drafter import SpecDrafterModel
from fairseq_specdec.verifier_features import TeacherVerifier
from fairseq_specdec.verifier_record import RECORD_KEY, VerifierRecord

logger = logging.getLogger(__name__)


@dataclass
class SpecDecTranslationConfig(TranslationConfig):
    block_size: Optional[int] = field(
        default=None,
        metadata={"help": f"k: tokens the drafter predicts per forward. Training: default {DEFAULT_BLOCK_SIZE}. "
                  "Decoding: default the k the drafter checkpoint was trained with; a different value "
                  "overrides it (with a warning)"},
    )
    drafter_path: Optional[str] = field(
        default=None,
        metadata={"help": "decode speculatively with this Spec-Drafter checkpoint; without it, "
                  "generation is stock fairseq"},
    )
    beta: int = field(
        default=1, metadata={"help": "accept a draft only if it is in the verifier's top-beta (1 = lossless greedy)"}
    )
    tau: float = field(
        default=1.0,
        metadata={"help": "and only if its log-probability is within tau of the verifier's top-1 (used when beta > 1)"},
    )
    cuts_per_target: int = field(
        default=4,
        metadata={"help": "feature drafter training: cut points drafted per target and batch (shared by the "
                  "batch's targets, whose lengths fairseq's batching keeps close); 0 = every cut"},
    )
    specdec_profile: bool = field(
        default=False,
        metadata={"help": "time the drafter, the verifier and the bookkeeping separately and log the split "
                  "(on CUDA this synchronizes the device several times per iteration)"},
    )
    ngram_drafter: bool = field(
        default=False,
        metadata={"help": "decode speculatively with a model-free n-gram drafter (see ngram_drafter.py): "
                  "alone, or combined with the Spec-Drafter when --drafter-path is also given"},
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
    seed: int = II("common.seed")


@register_task("specdec_translation", dataclass=SpecDecTranslationConfig)
class SpecDecTranslationTask(TranslationTask):
    """Translation with SpecDec (Xia et al., EMNLP Findings 2023, arXiv 2203.16487).

    Training (``--arch`` picks the drafter kind): the Spec-Drafter sees each target cut at a
    random point, reads the prefix and ``block_size`` [MASK] queries and learns the next
    ``block_size`` tokens (eos included; ``specdec_glancing``); the feature drafter reads the
    verifier's teacher-forced states instead of the prefix tokens (``specdec_feature``); the
    chain drafter predicts the verifier's next state at every target position, teacher-forced
    (``specdec_chain``). Decoding: with ``--drafter-path`` and/or ``--ngram-drafter`` the
    generator is speculative (drafts from the trained drafter of any kind, the model-free
    n-gram drafter, or both combined); ``--lean-greedy`` is greedy through the lean verifier;
    with a Spec-Drafter checkpoint as ``--path`` it is drafter-only; otherwise fairseq's own.
    """

    cfg: SpecDecTranslationConfig

    def __init__(self, cfg: SpecDecTranslationConfig, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        check_block_size(cfg.block_size)
        # k in use: training's until a drafter checkpoint is loaded, then that drafter's
        # (see build_model); --block-size, when given, wins in both
        self.block_size = cfg.block_size if cfg.block_size is not None else DEFAULT_BLOCK_SIZE
        if cfg.eval_bleu:
            raise ValueError("--eval-bleu is not available with specdec_translation; validation reports block accuracy")
        if cfg.ngram_order < 1:
            raise ValueError(f"--ngram-order must be >= 1, got {cfg.ngram_order}")
        if cfg.draft_vocab < 0:
            raise ValueError(f"--draft-vocab must be >= 1 (or 0 for the whole vocabulary), got {cfg.draft_vocab}")
        self.decoding_stats = DecodingStats(profile=cfg.specdec_profile)
        self._drafters = {}
        self._ngram_index = None  # built on first use, once per task
        self._shortlist = None  # --draft-vocab's tokens, counted on first use
        self._proposer = None  # (verifier, drafter model or None, proposer) of the last build_generator
        self._stats_logged_at_exit = False
        self._teacher = None  # TeacherVerifier of feature-drafter training, loaded once
        self.reads_prefix_and_queries = False  # set by build_model when the task's model is a drafter

    # ------------------------------------------------------------------ training
    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        if not isinstance(model, SpecDrafterModel):
            return model
        if self.cfg.drafter_path is None:  # the drafter is the model trained, or decoded with alone
            self.reads_prefix_and_queries = True
        if from_checkpoint:  # a drafter to decode with (--drafter-path, or drafter-only as --path): its k
            self.block_size = decoding_block_size(self.cfg.block_size, trained_block_size(cfg))
            return model
        if cfg.share_verifier_encoder and not cfg.init_from_verifier:
            raise ValueError("--share-verifier-encoder keeps the verifier's encoder: give the verifier "
                             "checkpoint with --init-from-verifier PATH")
        if cfg.init_from_verifier:
            verifier_state = model.init_from_verifier(cfg.init_from_verifier)
            # saved with the task's state in every checkpoint; decoding compares it with its verifier
            record = VerifierRecord.of_state(verifier_state, self.target_dictionary, cfg.init_from_verifier)
            self.state.merge_state_dict({RECORD_KEY: record.to_state()})
        return model

    def block_sample(self, sample, generator: torch.Generator, model=None):
        """Turn a translation batch into a drafter batch: prefixes + k-token block targets
        (for a feature drafter: the whole target and the verifier's states over it)."""
        model = unwrap(model)
        if isinstance(model, StateDrafterModel):
            return self.feature_sample(sample, model, generator)
        target = sample["target"]
        cut = sample_cut_points(target.ne(self.tgt_dict.pad()).sum(1), generator)
        batch = make_block_batch(target, cut, self.block_size, self.tgt_dict.pad(), self.tgt_dict.eos())
        net_input = sample["net_input"]
        return {
            **sample,
            "net_input": {
                "src_tokens": net_input["src_tokens"],
                "src_lengths": net_input["src_lengths"],
                "prev_output_tokens": batch.prefix,
                "block_size": self.block_size,
            },
            "target": batch.block_target,
            "ntokens": int(batch.block_target.ne(self.tgt_dict.pad()).sum()),
        }

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        if hasattr(criterion, "set_num_updates"):
            criterion.set_num_updates(update_num)
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + update_num)
        return super().train_step(self.block_sample(sample, generator, model), model, criterion, optimizer,
                                  update_num, ignore_grad)

    def valid_step(self, sample, model, criterion):
        # the same cut points at every validation: the figures are comparable across epochs
        generator = torch.Generator().manual_seed(self.cfg.seed + int(sample["id"].min()))
        return super().valid_step(self.block_sample(sample, generator, model), model, criterion)

    def feature_sample(self, sample, model, generator: torch.Generator):
        """A batch for a drafter that reads the verifier's states: the teacher-forced
        verifier's states and log-probs (and for the feature drafter, k and the cut points
        to draft after)."""
        if self._teacher is None or self._teacher.path != model.args.init_from_verifier:
            self._teacher = TeacherVerifier.load(model.args.init_from_verifier, self)
        net_input = sample["net_input"]
        states, lprobs, encoder_out = self._teacher.run(net_input, like=next(model.parameters()))
        drafter_input = {
            "src_tokens": net_input["src_tokens"],
            "src_lengths": net_input["src_lengths"],
            "prev_output_tokens": net_input["prev_output_tokens"],
            "verifier_states": states,
            "target": sample["target"],
            "encoder_out": encoder_out,
        }
        if isinstance(model, SpecFeatureDrafterModel):
            drafter_input["block_size"] = self.block_size
            drafter_input["cuts"] = pick_cuts(sample["target"].size(1), self.cfg.cuts_per_target,
                                              generator).to(states.device)
        return {**sample, "net_input": drafter_input, "teacher_lprobs": lprobs}

    def max_positions(self):
        """When the task's model is a drafter (drafter training, drafter-only decoding), its
        decoder reads a target prefix plus k queries: targets must leave room for k. A
        verifier (stock or speculative decoding) keeps every position."""
        max_source, max_target = super().max_positions()
        if self.reads_prefix_and_queries:
            max_target -= self.block_size  # the loaded drafter's k, or training's
        return max_source, max_target

    # ------------------------------------------------------------------ decoding
    @property
    def decodes_speculatively(self) -> bool:
        """Whether a verifier given as --path decodes with SpecDec (a drafter is given)."""
        return self.cfg.drafter_path is not None or self.cfg.ngram_drafter

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None,
                        prefix_allowed_tokens_fn=None):
        if isinstance(models[0], StateDrafterModel):
            raise ValueError(f"a {type(models[0]).__name__} (--arch {models[0].args.arch}) drafts from its verifier's "
                             "states and cannot decode alone: pass the verifier as --path and this checkpoint as "
                             "--drafter-path")
        drafter_only = isinstance(models[0], SpecDrafterModel)
        speculative = self.decodes_speculatively
        if drafter_only and speculative:
            given = "--drafter-path" if self.cfg.drafter_path is not None else "--ngram-drafter"
            raise ValueError(f"--path holds a drafter ({models[0].args.arch}) and {given} asks for another: SpecDec "
                             f"verifies with the model of --path. Give the verifier as --path, or drop {given} to "
                             "decode with the drafter alone")
        if (drafter_only or speculative) and args.beam != 1:
            raise ValueError(beam_error(args.beam, "drafter-only decoding" if drafter_only else "SpecDec",
                                        sampling=args.sampling))
        if self.cfg.draft_vocab and (drafter_only or self.cfg.drafter_path is None):
            raise ValueError("--draft-vocab sets the chain drafter's vocabulary: give the verifier as --path and a "
                             "chain drafter as --drafter-path, or drop --draft-vocab")
        if not (drafter_only or speculative or self.cfg.lean_greedy):
            refuse_graphs_for_stock_search(self.graph_options())
            return super().build_generator(models, args, seq_gen_cls, extra_gen_cls_kwargs,
                                           prefix_allowed_tokens_fn)
        what = "drafter-only decoding" if drafter_only else "SpecDec" if speculative else "--lean-greedy"
        check_generation_options(args, prefix_allowed_tokens_fn, what=what,
                                 supported=() if drafter_only else ("sampling",))
        proposer = None
        if speculative:
            self.log_stats_at_exit()
            proposer = self.proposer_for(models[0])  # loads the drafter, and with it its k (build_model)
            if self.cfg.drafter_path is None:
                self.block_size = ngram_block_size(self.cfg.block_size)
            else:
                check_drafter_block_size(self.drafter_for(models[0]), self.block_size)
        decoding = Decoding(beam=args.beam, lean_greedy=self.cfg.lean_greedy,
                            proposer=proposer, block_size=self.block_size, beta=self.cfg.beta, tau=self.cfg.tau,
                            graphs=self.graph_options(), adaptive=not self.cfg.fixed_block,
                            sampling=sampling_rule(args))
        return build_generator(models, self.target_dictionary, decoding, search_options(args),
                               stats=self.decoding_stats)

    def drafter_for(self, verifier):
        """The drafter checkpoint loaded once, on the verifier's device and dtype."""
        path = self.cfg.drafter_path
        if path not in self._drafters:
            self._drafters[path] = load_drafter(path, self, verifier)
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
        """The drafting side for this verifier, built once: the Spec-Drafter (--drafter-path),
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


def unwrap(model):
    """The model inside fairseq's distributed wrappers (which keep it as ``.module``)."""
    while isinstance(model, torch.nn.Module) and hasattr(model, "module"):
        model = model.module
    return model


def log_quietly(stats: DecodingStats) -> None:
    """Log the summary; at interpreter exit a host (pytest, a notebook) may have closed the
    log's stream already, and a failed best-effort summary must not print a traceback."""
    raise_exceptions, logging.raiseExceptions = logging.raiseExceptions, False
    try:
        stats.log()
    finally:
        logging.raiseExceptions = raise_exceptions
