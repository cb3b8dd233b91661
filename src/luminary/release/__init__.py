"""LLM360-style releases: every checkpoint, the exact data chunk each one saw, logs, a card."""

from luminary.release.verify import verify_release
from luminary.release.writer import make_release

__all__ = ["make_release", "verify_release"]
