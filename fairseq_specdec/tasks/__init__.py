"""Tasks of the plugin; importing a module registers its task."""
from fairseq_specdec.tasks import specdec_multilingual, specdec_translation  # noqa: F401
