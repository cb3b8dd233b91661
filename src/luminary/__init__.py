"""luminary: an open workshop for language models.

Importing the package registers luminary's own architectures (``crystal`` and
the mixtures of ``luminary.merge``) with transformers' Auto classes, so that a
folder luminary wrote loads with ``AutoModelForCausalLM.from_pretrained`` and
no remote code.
"""

__version__ = "0.1.0"

from luminary.core.errors import LuminaryError  # noqa: E402
from luminary.models import registry as _registry  # noqa: E402,F401  (registers Auto classes)

__all__ = ["LuminaryError", "__version__"]
