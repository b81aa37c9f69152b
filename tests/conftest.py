import os

# Before torch loads: OpenMP threads that spin-wait stall each other on a busy 2-core CI box.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


import pytest  # noqa: E402  (the environment above must be set before anything imports torch)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one thread is as fast, and immune to OpenMP threads that spin-wait for a
    descheduled partner on a busy machine (which made such files ~30x slower under load)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
