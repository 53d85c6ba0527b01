"""Models of the plugin; importing a module registers its model and architectures."""
from fairseq_specdec.models import specdec_drafter  # noqa: F401
from fairseq_specdec.models import feature_drafter  # noqa: F401,E402
from fairseq_specdec.models import chain_drafter  # noqa: F401,E402
