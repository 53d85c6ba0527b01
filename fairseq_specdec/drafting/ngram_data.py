"""The n-gram drafter's data: the target side of a binarized fairseq split, read with
fairseq's own loader, with the checks that must fail before any decoding starts."""
import itertools
import logging
import os
from typing import List, Optional

from fairseq.data import Dictionary, data_utils
from torch import Tensor

from fairseq_specdec.drafting.ngram_index import NGramIndex

logger = logging.getLogger(__name__)


class NGramDataError(ValueError):
    pass


def check_target_dictionary(data_dir: str, tgt: str, tgt_dict: Dictionary, flag: str) -> None:
    """The index holds token ids: the data must be binarized with the decoder's dictionary."""
    path = os.path.join(data_dir, f"dict.{tgt}.txt")
    if not os.path.isfile(path):
        raise NGramDataError(f"{flag} {data_dir!r} has no dict.{tgt}.txt: give a fairseq-preprocess --destdir")
    if Dictionary.load(path).symbols != tgt_dict.symbols:
        raise NGramDataError(
            f"{flag} {data_dir!r}: its target dictionary ({path}) differs from the decoder's; binarize the "
            f"data with the verifier's dictionary (fairseq-preprocess --tgtdict)")


def load_target_sentences(data_dir: str, src: str, tgt: str, tgt_dict: Dictionary, split: str = "train",
                          dataset_impl: Optional[str] = None, flag: str = "--ngram-data") -> List[Tensor]:
    """The target token ids (each ending with eos) of ``split`` in ``data_dir``, shards
    ``split1``, ``split2``... included, as fairseq's translation task finds them."""
    if not os.path.isdir(data_dir):
        raise NGramDataError(f"{flag} {data_dir!r}: no such directory (give a fairseq-preprocess --destdir)")
    check_target_dictionary(data_dir, tgt, tgt_dict, flag)
    sentences: List[Tensor] = []
    for k in itertools.count():
        shard = split + (str(k) if k > 0 else "")
        dataset = None
        for pair in (f"{src}-{tgt}", f"{tgt}-{src}"):
            dataset = data_utils.load_indexed_dataset(os.path.join(data_dir, f"{shard}.{pair}.{tgt}"), tgt_dict,
                                                      dataset_impl)
            if dataset is not None:
                break
        if dataset is None:
            if k == 0:
                raise NGramDataError(f"{flag} {data_dir!r} has no binarized {split}.{src}-{tgt}.{tgt} "
                                     f"(nor {split}.{tgt}-{src}.{tgt})")
            break
        sentences.extend(dataset[i] for i in range(len(dataset)))
    return sentences


def build_index(data_dir: str, src: str, tgt: str, tgt_dict: Dictionary, order: int, split: str = "train",
                dataset_impl: Optional[str] = None, flag: str = "--ngram-data") -> NGramIndex:
    """An ``NGramIndex`` over the targets of ``split`` in ``data_dir``."""
    if order < 1:
        raise NGramDataError(f"the n-gram order must be >= 1, got {order}")
    sentences = load_target_sentences(data_dir, src, tgt, tgt_dict, split, dataset_impl, flag)
    logger.info("n-gram drafter: indexing %d target sentences of %s/%s", len(sentences), data_dir, split)
    return NGramIndex(sentences, order=order, eos=tgt_dict.eos(), vocab_size=len(tgt_dict))
