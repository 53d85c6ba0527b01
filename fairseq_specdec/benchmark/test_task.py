"""What the measuring scripts (``scripts/precision_check.py``, ``scripts/compile_check.py``) set up
first: the plugin's task over a binarized data directory, with its test split loaded."""
from argparse import Namespace

from fairseq import tasks

import fairseq_specdec  # noqa: F401  (registers the plugin's task and models)


def load_test_task(data: str, source_lang: str, target_lang: str):
    """The ``specdec_translation`` task of ``data`` (SOURCE-TARGET), its test split loaded."""
    task = tasks.setup_task(Namespace(
        task="specdec_translation", data=data, source_lang=source_lang, target_lang=target_lang,
        block_size=None, seed=1, dataset_impl=None, train_subset="train", required_seq_len_multiple=1))
    task.load_dataset("test")
    return task
