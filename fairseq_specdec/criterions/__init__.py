"""Criterions of the plugin; importing a module registers its criterion."""
from fairseq_specdec.criterions import glancing_loss  # noqa: F401
from fairseq_specdec.criterions import feature_loss  # noqa: F401,E402
from fairseq_specdec.criterions import chain_loss  # noqa: F401,E402
