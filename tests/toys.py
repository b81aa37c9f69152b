"""Toy targets and a tiny random encoder-decoder shared by the sampling and speculative-decoding tests;
and ``load_benchmark``, which imports a script of ``benchmarks/`` for the tests that run one at toy size."""

import importlib.util
import sys
from pathlib import Path

import torch

from argen.targets import Grammar, TargetTokenizer
from argen.transformer import EncoderDecoder, TransformerConfig

V = 24


class GridTarget(TargetTokenizer):
    """Fixed-length 'image' of side x side tokens whose row/col enter as features (like ImageTarget)."""

    def __init__(self, side=6):
        self.vocab_size, self.max_len, self.side = V, side * side, side
        self.feature_sizes = (side + 1, side + 1)

    def token_features(self, inputs, positions):
        # positions: (T,) shared by the batch, or (B, T) per row (speculative decoding); 0 is "none"
        row, col = positions // self.side + 1, positions % self.side + 1
        return torch.stack([row, col], -1).expand(*inputs.shape, 2)


class ParityTarget(TargetTokenizer):
    """Variable length: tokens alternate even/odd, EOS (22) may come any time, then PAD (23)."""

    eos_id, pad_id = 22, 23

    def __init__(self, max_len=20, force_eos_at=None):
        self.vocab_size, self.max_len, self.force_eos_at = V, max_len, force_eos_at

    def grammar(self):
        # states: 0 expects even, 1 expects odd, 2 done; with force_eos_at, count steps instead
        if self.force_eos_at is not None:
            n = self.force_eos_at
            allowed = torch.zeros(n + 2, V, dtype=torch.bool)
            allowed[:n, :20] = True
            allowed[n, 22] = True
            allowed[n + 1, 23] = True
            transition = torch.full((n + 2, V), n + 1)
            transition[:n] = torch.arange(1, n + 1)[:, None]
            return Grammar(allowed, transition)
        allowed = torch.zeros(3, V, dtype=torch.bool)
        allowed[0, 0:20:2] = allowed[1, 1:20:2] = True
        allowed[:2, 22] = True
        allowed[2, 23] = True
        transition = torch.full((3, V), 2)
        transition[0, 0:20:2], transition[1, 1:20:2] = 1, 0
        return Grammar(allowed, transition)


def make_model(feature_sizes=()):
    torch.manual_seed(0)
    config = TransformerConfig(text_vocab_size=40, target_vocab_size=V, max_text_len=12, max_target_len=40,
                               target_feature_sizes=feature_sizes, d_model=48, n_heads=4, enc_layers=2,
                               dec_layers=2, d_ff=96, tie_embeddings=False)
    model = EncoderDecoder(config).eval()
    with torch.no_grad():  # logits of std ~1.5 rather than ~0.15, so sampling choices matter
        model.head.weight.mul_(10)
    return model


def prompts(B=3, S=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 40, (B, S), generator=g)
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[1, 4:] = False  # one padded row
    return ids, mask


def tiny_image_tokenizer(root):
    """An untrained 32 px ViT-VQGAN tokenizer (4x4 tokens, 64 codes) saved under ``root/tokenizer``."""
    from argen.vqgan import VQGAN, ImageTokenizer, VQGANConfig

    torch.manual_seed(0)
    vq = VQGAN(VQGANConfig(image_size=32, patch_size=8, dim=32, enc_layers=1, dec_layers=1, heads=2, mlp_dim=64,
                           codebook_size=64, code_dim=8, kmeans_init=False))
    ImageTokenizer(vq).save_pretrained(root / "tokenizer")
    return root / "tokenizer"


def tiny_export(target, text, out, max_text_len=32, **module_kwargs):
    """An untrained one-layer generator for ``target`` exported to ``out``, as training would write it."""
    from argen.transformer.lit import Seq2SeqModule
    from argen.transformer.model import config_from_preset

    module = Seq2SeqModule(target=target, preset="demo", **module_kwargs)
    module.net = EncoderDecoder(config_from_preset(
        "demo", text_vocab_size=text.vocab_size, max_text_len=max_text_len, target_vocab_size=target.vocab_size,
        max_target_len=target.max_len, target_feature_sizes=tuple(target.feature_sizes), d_model=32,
        n_heads=2, enc_layers=1, dec_layers=1, d_ff=64))
    module.text_tokenizer = text
    return module.export(out)


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
