"""The ``specdec_translation`` task: trains the Spec-Drafter on k-token blocks and
builds the speculative (or drafter-only) generator for decoding."""
from dataclasses import dataclass, field

import torch
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from fairseq_specdec.drafting.kinds import check_criterion, kind_of
from fairseq_specdec.tasks.specdec_decoding import SpecDecDecoding, SpecDecDecodingConfig
from fairseq_specdec.training.batches import BUILDERS
from fairseq_specdec.training.teacher import TeacherVerifier
from fairseq_specdec.verifier_record import RECORD_KEY, VerifierRecord

@dataclass
class SpecDecTranslationConfig(TranslationConfig, SpecDecDecodingConfig):
    """The translation task's options, the decoding options (``SpecDecDecodingConfig``) and training's."""

    cuts_per_target: int = field(
        default=4,
        metadata={"help": "feature drafter training: cut points drafted per target and batch (shared by the "
                  "batch's targets, whose lengths fairseq's batching keeps close); 0 = every cut"},
    )
    seed: int = II("common.seed")


@register_task("specdec_translation", dataclass=SpecDecTranslationConfig)
class SpecDecTranslationTask(SpecDecDecoding, TranslationTask):
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
        if cfg.eval_bleu:
            raise ValueError("--eval-bleu is not available with specdec_translation; validation reports block accuracy")
        self.init_decoding()
        self._teacher = None  # TeacherVerifier of feature-drafter training, loaded once

    # ------------------------------------------------------------------ training
    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        if kind_of(model) is None or from_checkpoint:  # a verifier, or a drafter to decode with
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
        kind = kind_of(model)
        if kind is None:
            raise ValueError(f"specdec_translation trains drafters (--arch specdec_drafter_*), not a "
                             f"{type(model).__name__}: train a verifier with --task translation")
        return BUILDERS[kind.batch](self, sample, model, kind, generator)

    def teacher_for(self, model) -> TeacherVerifier:
        """The frozen verifier a drafter reading its states is trained against, loaded once."""
        if self._teacher is None or self._teacher.path != model.args.init_from_verifier:
            self._teacher = TeacherVerifier.load(model.args.init_from_verifier, self)
        return self._teacher

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        if hasattr(criterion, "set_num_updates"):
            criterion.set_num_updates(update_num)
        check_criterion(unwrap(model), criterion)
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + update_num)
        return super().train_step(self.block_sample(sample, generator, model), model, criterion, optimizer,
                                  update_num, ignore_grad)

    def valid_step(self, sample, model, criterion):
        # the same cut points at every validation: the figures are comparable across epochs
        generator = torch.Generator().manual_seed(self.cfg.seed + int(sample["id"].min()))
        return super().valid_step(self.block_sample(sample, generator, model), model, criterion)

    # ------------------------------------------------------------------ decoding
    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None,
                        prefix_allowed_tokens_fn=None):
        def stock():
            return super(SpecDecTranslationTask, self).build_generator(
                models, args, seq_gen_cls, extra_gen_cls_kwargs, prefix_allowed_tokens_fn)

        return self.build_specdec_generator(models, args, stock, prefix_allowed_tokens_fn, extra_gen_cls_kwargs)


def unwrap(model):
    """The model inside fairseq's distributed wrappers (which keep it as ``.module``)."""
    while isinstance(model, torch.nn.Module) and hasattr(model, "module"):
        model = model.module
    return model
