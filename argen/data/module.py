"""``ShardDataModule``: webdataset shards -> batches, for LightningCLI recipes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule

from argen.data.recipes import DEFAULT_VOCAB, folder_lock, normalize_recipe, prepare_recipe, tokenizer_for
from argen.data.shards import expand_shards, make_loader
from argen.text import TextTokenizer


class ShardDataModule(LightningDataModule):
    """Training and validation batches from webdataset shards in the img2dataset layout.

    Batches are dicts: ``image`` float (B, 3, H, W) in [0, 1] (when ``load_image`` and the samples
    have images), ``svg`` list[str] (``load_svg``), ``tokens`` long (B, L) (when every sample has
    ``KEY.tok.npy``), ``text_ids`` long (B, T) and ``text_mask`` bool (B, T) (with a text
    tokenizer), ``caption`` and ``key`` lists.

    Args:
        train_shards, val_shards: shard specs: brace patterns, globs, lists, paths or URLs.
        image_size: images are resized (shorter side) and centre-cropped to this.
        text_tokenizer: path of a ``tokenizer.json`` (see ``python -m argen.data tokenizer``).
        steps_per_epoch: training batches per epoch on every rank (the stream is endless).
        shuffle_buffer: samples held for shuffling in each training worker.
        max_bad_fraction: a stream with more bad samples than this stops with an error.
        val_batches: validate on this many batches (default: all of ``val_shards``).
        prepare: a built-in data recipe, e.g. ``{dataset: shapes, out: data/shapes32, train: 20000,
            val: 512, size: 32, seed: 0, vocab_size: 128}`` or ``{dataset: icons, out: data/icons,
            format: svg}``. ``prepare_data`` writes its shards when missing, and trains the text
            tokenizer (``vocab_size``) when the ``text_tokenizer`` file is missing. Unset shard
            specs and tokenizer default to ``OUT/train-*.tar``, ``OUT/val-*.tar``, ``OUT/tokenizer.json``.
    """

    def __init__(self, train_shards: str | list[str] | None = None, val_shards: str | list[str] | None = None,
                 batch_size: int = 32, num_workers: int = 2, image_size: int = 256,
                 text_tokenizer: str | None = None, max_text_len: int = 128, load_image: bool = True,
                 load_svg: bool = False, steps_per_epoch: int = 1000, shuffle_buffer: int = 1000,
                 max_bad_fraction: float = 0.2, val_batches: int | None = None, seed: int = 0,
                 prepare: dict | None = None):
        super().__init__()
        self.save_hyperparameters()
        for name, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                 ("image_size", image_size, 1), ("max_text_len", max_text_len, 2),
                                 ("steps_per_epoch", steps_per_epoch, 1), ("shuffle_buffer", shuffle_buffer, 0)):
            if value < low:
                raise ValueError(f"ShardDataModule: {name} must be ≥ {low}, got {value}")
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"ShardDataModule: max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        self.recipe = normalize_recipe(prepare) if prepare else None
        if self.recipe:
            out = Path(self.recipe["out"])
            train_shards = train_shards or str(out / "train-*.tar")
            val_shards = val_shards or str(out / "val-*.tar")
            text_tokenizer = text_tokenizer or str(out / "tokenizer.json")
        self.train_shards, self.val_shards = train_shards, val_shards
        self.batch_size, self.num_workers, self.image_size = batch_size, num_workers, image_size
        self.text_tokenizer_path, self.max_text_len = text_tokenizer, max_text_len
        self.load_image, self.load_svg = load_image, load_svg
        self.steps_per_epoch, self.shuffle_buffer = steps_per_epoch, shuffle_buffer
        self.max_bad_fraction, self.val_batches, self.seed = max_bad_fraction, val_batches, seed
        self._tokenizer = None

    # -- data on disk ---------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Write the recipe's shards and train its text tokenizer, where missing (rank 0 per node)."""
        if not self.recipe:
            return
        prepare_recipe(self.recipe)
        path = Path(self.text_tokenizer_path)
        with folder_lock(path.parent):
            if not path.is_file():
                vocab = self.recipe.get("vocab_size", DEFAULT_VOCAB[self.recipe["dataset"]])
                tokenizer_for(self.train_shards, vocab, path)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_shards is None:
            raise ValueError("ShardDataModule: train_shards is not set (nor a prepare recipe)")
        for spec in (self.train_shards, self.val_shards):
            if spec is not None:
                expand_shards(spec)  # a missing shard is an error now, naming the path
        _ = self.text_tokenizer

    # -- tokenizer ------------------------------------------------------------------------------
    @property
    def text_tokenizer(self):
        """The :class:`argen.text.TextTokenizer` (None without ``text_tokenizer``), prepared if need be."""
        if self._tokenizer is None and self.text_tokenizer_path is not None:
            if self.recipe and not Path(self.text_tokenizer_path).is_file():
                self.prepare_data()
            self._tokenizer = TextTokenizer.from_file(self.text_tokenizer_path)
        return self._tokenizer

    @property
    def text_vocab_size(self) -> int:
        if self.text_tokenizer is None:
            raise ValueError("ShardDataModule: text_vocab_size needs text_tokenizer (a tokenizer.json path)")
        return self.text_tokenizer.vocab_size

    # -- loaders --------------------------------------------------------------------------------
    def _loader(self, shards, train: bool) -> Any:
        return make_loader(shards, train=train, batch_size=self.batch_size, num_workers=self.num_workers,
                           image_size=self.image_size, tokenizer=self.text_tokenizer,
                           max_text_len=self.max_text_len, load_image=self.load_image, load_svg=self.load_svg,
                           steps=self.steps_per_epoch if train else self.val_batches,
                           shuffle_buffer=self.shuffle_buffer, max_bad_fraction=self.max_bad_fraction,
                           seed=self.seed)

    def train_dataloader(self):
        if self.train_shards is None:
            raise ValueError("ShardDataModule: train_shards is not set (nor a prepare recipe)")
        return self._loader(self.train_shards, train=True)

    def target_sequences(self, target, max_tokens: int) -> list[list[int]]:
        """The training samples as ``target`` tokenizes them (padding stripped, skipped ones left
        out), in shard order, until ``max_tokens`` tokens: the corpus an export drafts from."""
        loader = make_loader(self.train_shards, train=False, batch_size=64, image_size=self.image_size,
                             load_image=self.load_image, load_svg=self.load_svg,
                             max_bad_fraction=self.max_bad_fraction)
        sequences, total = [], 0
        for batch in loader:
            for row in target.encode_batch(batch).tolist():
                row = [t for t in row if t != target.pad_id]
                if row and total + len(row) <= max_tokens:
                    sequences.append(row)
                    total += len(row)
            if total >= max_tokens:
                break
        return sequences

    def val_dataloader(self):
        if self.val_shards is None:
            return []
        return self._loader(self.val_shards, train=False)
