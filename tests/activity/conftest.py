"""One tiny synthetic ARIC for the whole folder (written once: a few hundred samples)."""

import pytest

from luminary.activity.synth import SynthConfig, make_synthetic

TINY = SynthConfig(scale=0.002, seed=0, min_per_class=12, max_per_frame=16, audio_seconds=0.1)


@pytest.fixture(scope="session")
def aric(tmp_path_factory):
    root = tmp_path_factory.mktemp("aric") / "aric"
    make_synthetic(root, TINY)
    return root


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Tiny matrices: one intra-op thread is faster than two on a shared CPU (restored when this
    folder's tests end, so the rest of the suite keeps its threads)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
