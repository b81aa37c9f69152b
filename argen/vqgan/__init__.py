"""Stage 1: the ViT-VQGAN image tokenizer (model, losses, Lightning training, export, stage-2 target)."""

from argen.vqgan.model import PRESETS, VQGAN, VQGANConfig, config_from_preset
from argen.vqgan.target import ImageTarget, ImageTokenizer, evaluate


def __getattr__(name):  # the Lightning module loads on first use: sampling never needs Lightning
    if name == "VQGANModule":
        from argen.vqgan.lit import VQGANModule

        return VQGANModule
    raise AttributeError(f"module 'argen.vqgan' has no attribute {name!r}")


__all__ = ["PRESETS", "VQGAN", "VQGANConfig", "VQGANModule", "ImageTarget", "ImageTokenizer",
           "config_from_preset", "evaluate"]
