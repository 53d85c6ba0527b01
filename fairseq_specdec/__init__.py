"""fairseq-specdec: SpecDec (Xia et al., EMNLP Findings 2023, arXiv 2203.16487) for fairseq.

Importing this package (``--user-dir fairseq_specdec`` or ``import fairseq_specdec``)
registers the plugin's task, model and criterion with fairseq, and allow-lists the
classes fairseq checkpoints need under torch >= 2.6.
"""
from fairseq_specdec.checkpoint_compat import allow_fairseq_checkpoint_globals

allow_fairseq_checkpoint_globals()

# Each import registers its components with fairseq's registries. fairseq's
# import_user_module only auto-imports tasks/ and models/, so criterions are named here.
from fairseq_specdec import criterions, models, tasks  # noqa: E402,F401

__version__ = "0.1.0"
