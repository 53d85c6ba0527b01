"""The benchmark: every decoding mode in one process, interleaved (``python -m
fairseq_specdec.benchmark`` or ``specdec-benchmark``).

``cli`` parses the options, loads the models and times the modes; ``modes`` builds one
decoder per mode (through the generators ``fairseq-generate`` runs); ``report`` turns the
timings into the table, benchmark.json and the plots; ``ct2`` is the CTranslate2 peer.
"""
from fairseq_specdec.benchmark.cli import cli_main, main  # noqa: F401
