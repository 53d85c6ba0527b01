"""Drafter-training data for a multilingual verifier: the pairs of a
``translation_multi_simple_epoch`` data directory written out as one bilingual data
directory (languages ``src`` and ``tgt``), each source and target with the language
tokens fairseq's multilingual task adds (``--encoder-langtok``, ``--decoder-langtok``),
and the task's dictionary with its language tokens.

    python -m fairseq_specdec.training.multilingual_pairs DATA OUT --splits train valid \\
        --lang-pairs en-fr,en-es --encoder-langtok src --decoder-langtok
    fairseq-train OUT --user-dir fairseq_specdec --task specdec_translation -s src -t tgt \\
        --arch specdec_drafter_chain ... --init-from-verifier VERIFIER.pt

The batches are the multilingual task's own (fairseq builds them, this module only
copies their rows), so the drafter trains on exactly what the verifier reads: the
plugin's ``specdec_translation`` task feeds the decoder ``eos``, the target-language
token, then the target, which is what ``specdec_translation_multi_simple_epoch`` decodes
after its forced language-token prefix. Any flag of the multilingual task after the
plugin's own is passed to it (those that shape the verifier's input: the language pairs and
language tokens; sampling flags, which would resample the pairs, are refused). Distil first as for a
bilingual verifier (fairseq-generate per pair, binarized with the verifier's dictionary)
and point DATA at the distilled data.
"""
import argparse
import logging
import os
import sys
from typing import List

import torch
from fairseq import options, tasks
from fairseq.data import indexed_dataset

logger = logging.getLogger("fairseq_specdec.training.multilingual_pairs")

SOURCE, TARGET = "src", "tgt"  # the languages of the written bilingual directory


def parse(argv: List[str]):
    ours = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    ours.add_argument("data", help="the multilingual (translation_multi_simple_epoch) data directory")
    ours.add_argument("out", help="the bilingual data directory to write")
    ours.add_argument("--splits", nargs="+", default=["train", "valid"], help="splits to write (default: train valid)")
    ours.add_argument("--max-tokens", type=int, default=8192, help="tokens per batch while reading")
    mine, rest = ours.parse_known_args(argv)
    parser = options.get_generation_parser(default_task="translation_multi_simple_epoch")
    task_args = options.parse_args_and_arch(parser, [mine.data, "--task", "translation_multi_simple_epoch", *rest])
    return mine, task_args


def check_layout(task_args) -> None:
    """Refuse the multilingual layouts a bilingual directory cannot hold."""
    if task_args.lang_tok_replacing_bos_eos:
        raise ValueError("--lang-tok-replacing-bos-eos puts the language tokens in place of bos/eos, which a "
                         "bilingual directory cannot express: write the data with language tokens prepended "
                         "(the task's default)")
    if task_args.source_lang is not None or task_args.target_lang is not None:
        raise ValueError("-s/--source-lang and -t/--target-lang pick one inference pair: leave them out, the "
                         "pairs written are those of --lang-pairs")
    if not task_args.lang_pairs:
        raise ValueError("--lang-pairs is required: the pairs to write, as the verifier was trained with them")
    resampled = [flag for flag, on in (("--sampling-method " + str(task_args.sampling_method),
                                        task_args.sampling_method != "concat"),
                                       ("--sampling-weights", bool(task_args.sampling_weights)),
                                       ("--sampling-weights-from-file", bool(task_args.sampling_weights_from_file)),
                                       ("--virtual-epoch-size", task_args.virtual_epoch_size is not None))
                 if on]
    if resampled:
        raise ValueError(f"{', '.join(resampled)}: fairseq would resample the pairs (some repeated, some left out); "
                         "the drafter's data is every pair once: leave the sampling flags out (concat, the default)")


def rows(tokens: torch.Tensor, pad: int):
    """The unpadded rows of a padded batch (left or right padding)."""
    return [row[row.ne(pad)] for row in tokens]


def check_teacher_forcing(prev_rows, target_rows, eos: int) -> None:
    """Each decoder input (unpadded) must be eos then its target's tokens (what the bilingual
    task builds)."""
    for prev, target in zip(prev_rows, target_rows):
        expected = torch.cat([target.new_tensor([eos]), target[:-1]])
        if not torch.equal(prev, expected):
            raise ValueError(f"the multilingual task feeds the decoder {prev.tolist()[:8]}... for target "
                             f"{target.tolist()[:8]}...: not eos followed by the target, which a bilingual "
                             "directory cannot reproduce")


def write_split(task, split: str, out: str, max_tokens: int) -> int:
    task.load_dataset(split, epoch=1)
    dataset = task.dataset(split)
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    prefix = os.path.join(out, f"{split}.{SOURCE}-{TARGET}")
    builders = {SOURCE: indexed_dataset.make_builder(f"{prefix}.{SOURCE}.bin", "mmap", len(src_dict)),
                TARGET: indexed_dataset.make_builder(f"{prefix}.{TARGET}.bin", "mmap", len(tgt_dict))}
    batches = task.get_batch_iterator(dataset, max_tokens=max_tokens, max_positions=task.max_positions(),
                                      ignore_invalid_inputs=False, seed=1).next_epoch_itr(shuffle=False)
    written = 0
    for sample in batches:
        targets = rows(sample["target"], tgt_dict.pad())
        check_teacher_forcing(rows(sample["net_input"]["prev_output_tokens"], tgt_dict.pad()), targets, tgt_dict.eos())
        for source, target in zip(rows(sample["net_input"]["src_tokens"], src_dict.pad()), targets):
            builders[SOURCE].add_item(source.int())
            builders[TARGET].add_item(target.int())
            written += 1
    for lang, builder in builders.items():
        builder.finalize(f"{prefix}.{lang}.idx")
    if written != len(dataset):
        raise ValueError(f"{split}: wrote {written} of the {len(dataset)} pairs the multilingual task loaded")
    return written


def main(argv=None) -> None:
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO)
    mine, task_args = parse(sys.argv[1:] if argv is None else argv)
    check_layout(task_args)
    task = tasks.setup_task(task_args)
    os.makedirs(mine.out, exist_ok=True)
    task.source_dictionary.save(os.path.join(mine.out, f"dict.{SOURCE}.txt"))
    task.target_dictionary.save(os.path.join(mine.out, f"dict.{TARGET}.txt"))
    for split in mine.splits:
        written = write_split(task, split, mine.out, mine.max_tokens)
        logger.info(f"{split}: {written} pairs of {task_args.lang_pairs} written to {mine.out} "
                    f"({SOURCE} -> {TARGET}, language tokens included)")


if __name__ == "__main__":
    main()
