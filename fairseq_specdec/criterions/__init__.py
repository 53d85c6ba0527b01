"""Criterions of the plugin; importing a module registers its criterion."""
from fairseq_specdec.criterions import glancing_loss  # noqa: F401
