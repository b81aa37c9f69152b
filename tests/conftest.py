import os

# Before torch loads: OpenMP threads that spin-wait stall each other on a busy 2-core CI box.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
