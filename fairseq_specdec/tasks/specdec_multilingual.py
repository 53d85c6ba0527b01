"""The ``specdec_translation_multi_simple_epoch`` task: fairseq's multilingual task
(``translation_multi_simple_epoch``, the way M2M-100 and NLLB's dense checkpoints are
decoded), with SpecDec decoding.

Every flag of ``translation_multi_simple_epoch`` works as it does there (``--lang-pairs``,
``--encoder-langtok``, ``--decoder-langtok``, ``--lang-dict``, ...), plus the plugin's
decoding flags (``--drafter-path``, ``--lean-greedy``, ``--ngram-drafter``, ...). The
target-language token the decoder starts with is the forced prefix fairseq's own task
passes with each batch (or, with ``--lang-tok-replacing-bos-eos``, the begin-of-sentence
token), which every plugin generator honours; it is stripped from the output as fairseq
strips it. A drafter for such a verifier is trained by the plugin's ``specdec_translation``
task on the multilingual data written out by ``fairseq_specdec.training.multilingual_pairs``
(sources and targets with their language tokens, as this task feeds them).
"""
from dataclasses import fields

from fairseq.tasks import register_task
from fairseq.tasks.translation_multi_simple_epoch import TranslationMultiSimpleEpochTask

from fairseq_specdec.drafting.kinds import kind_of
from fairseq_specdec.tasks.specdec_decoding import SpecDecDecoding, SpecDecDecodingConfig, add_decoding_args


@register_task("specdec_translation_multi_simple_epoch")
class SpecDecMultilingualTask(SpecDecDecoding, TranslationMultiSimpleEpochTask):
    """Multilingual translation (fairseq's ``translation_multi_simple_epoch``) decoded with
    SpecDec (Xia et al., EMNLP Findings 2023, arXiv 2203.16487)."""

    @staticmethod
    def add_args(parser):
        TranslationMultiSimpleEpochTask.add_args(parser)
        add_decoding_args(parser)

    def __init__(self, args, langs, dicts, training):
        super().__init__(args, langs, dicts, training)
        # a legacy (argparse) task keeps its options as ``args`` and ``cfg = None``; the
        # plugin's decoding (and fairseq's own reads of ``cfg``) find them under ``cfg``
        self.cfg = args
        for option in fields(SpecDecDecodingConfig):  # a verifier's stored args (the hub) lack them
            if not hasattr(args, option.name):
                setattr(args, option.name, option.default)
        self.init_decoding()

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None,
                        prefix_allowed_tokens_fn=None):
        if kind_of(models[0]) is not None:
            raise ValueError(f"--path holds a drafter ({models[0].args.arch}): {self.__class__.__name__} verifies "
                             "with a multilingual verifier; give it as --path and the drafter as --drafter-path")

        def stock():
            if prefix_allowed_tokens_fn is not None:  # fairseq's multilingual task takes none
                raise ValueError("prefix_allowed_tokens_fn is not supported by translation_multi_simple_epoch")
            return super(SpecDecMultilingualTask, self).build_generator(models, args, seq_gen_cls,
                                                                         extra_gen_cls_kwargs)

        strip = self.language_tokens_to_strip(args)
        if strip:
            extra_gen_cls_kwargs = {**(extra_gen_cls_kwargs or {}), "symbols_to_strip_from_output": strip}
        return self.build_specdec_generator(models, args, stock, prefix_allowed_tokens_fn, extra_gen_cls_kwargs)

    def language_tokens_to_strip(self, args):
        """The target-language token, stripped from the output by the rule of fairseq's
        ``build_generator``, kept exactly (it reads ``keep_inference_langtok`` from the
        generation options ``args``, where fairseq-generate's config has no such field: the
        token is then always stripped; the hub's flat args may carry the flag)."""
        if getattr(args, "keep_inference_langtok", False):  # fairseq's own read, kept for identical output
            return set()
        _, tgt_langtok_spec = self.args.langtoks["main"]
        if not tgt_langtok_spec:
            return set()
        return {self.data_manager.get_decoder_langtok(self.args.target_lang, tgt_langtok_spec)}
