"""The contracts between argen's parts that are not class hierarchies, declared as ``Protocol``s.

Lightning passes modules around as ``LightningModule`` and ``LightningDataModule``; what argen's
callbacks and modules read off them beyond that is written here, so that a new module knows what
to provide, and a check can name what is missing instead of a feature silently switching off.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class ModelShape(Protocol):
    """What :class:`argen.throughput.Throughput` reads off a LightningModule to count model FLOPs.

    ``model_config``: the network's :class:`argen.transformer.TransformerConfig` (its sizes give the
    FLOPs per token). ``step_shape``: ``(batch, text_len, target_len)`` of the last training step,
    set in ``training_step`` (``None`` before the first). A module without them (the image
    tokenizer's) gets samples/s and tokens/s from the batch only, and no MFU.
    """

    @property
    def model_config(self): ...

    step_shape: tuple[int, int, int] | None


@runtime_checkable
class TextData(Protocol):
    """What :meth:`argen.transformer.lit.Seq2SeqModule.configure_model` reads off
    ``trainer.datamodule``: the text tokenizer (its vocabulary sizes the network's text embedding)
    and the longest text it batches (the network's text positions). :class:`argen.data.ShardDataModule`
    provides both."""

    @property
    def text_tokenizer(self): ...

    max_text_len: int
