"""luminary: an open workshop for language models.

Importing the package registers luminary's own architectures (``crystal`` and
the mixtures of ``luminary.merge``) with transformers' Auto classes, so that a
folder luminary wrote loads with ``AutoModelForCausalLM.from_pretrained`` and
no remote code. Registration happens when the Auto classes are first imported
(``luminary.models.registry``), so that importing luminary stays light.
"""

__version__ = "0.1.0"

from luminary.core.errors import LuminaryError  # noqa: E402
from luminary.models.registry import register_lazily  # noqa: E402

register_lazily()

__all__ = ["LuminaryError", "__version__"]
