"""Stage 2: the encoder-decoder transformer and its sampler (no Lightning imported here)."""

from argen.transformer.model import PRESETS, EncoderDecoder, TransformerConfig, config_from_preset
from argen.transformer.sampling import generate, log_likelihood, rerank_scores

__all__ = ["PRESETS", "EncoderDecoder", "TransformerConfig", "config_from_preset", "generate", "log_likelihood",
           "rerank_scores"]
