"""``argen.Generator``: load an export bundle and turn prompts into images or SVG icons."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

# Both built-in target kinds, imported so that they register (load_target looks a bundle's kind up).
import argen.svg  # noqa: F401
import argen.vqgan  # noqa: F401
from argen.export import load_bundle
from argen.sampling_config import UNSET, SamplingConfig
from argen.targets import TargetTokenizer, load_target
from argen.text import TextTokenizer
from argen.transformer.drafts import CorpusDrafts
from argen.transformer.model import EncoderDecoder, TransformerConfig
from argen.transformer.sampling import generate as sample_tokens
from argen.transformer.sampling import rerank_scores
from argen.transformer.speculative import SpeculativeStats, generate_speculative, speculative_window

Scorer = Callable[[str, list], Sequence[float]]


class Generator:
    """A trained encoder-decoder with its text tokenizer and target tokenizer.

    ``generate`` returns, per prompt, a list of outputs: PIL images for an image model, SVG strings
    for an SVG model. Defaults for guidance and sampling come from the bundle (set at training time):
    ``sampling``, a :class:`~argen.sampling_config.SamplingConfig`. ``corpus``: the training
    sequences speculative decoding drafts from (:class:`~argen.transformer.drafts.CorpusDrafts`), where
    the bundle has them.
    """

    def __init__(self, net: EncoderDecoder, text_tokenizer: TextTokenizer, target: TargetTokenizer,
                 sampling: SamplingConfig | dict | None = None, corpus: CorpusDrafts | None = None):
        self.net = net.eval()
        self.text_tokenizer = text_tokenizer
        self.target = target
        self.sampling = SamplingConfig.from_dict(sampling)
        self.corpus = corpus

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> Generator:
        """Load an export bundle (safetensors + JSON; nothing is unpickled)."""
        directory = Path(directory)
        config, state = load_bundle(directory, kind="generator")
        arch = dict(config["transformer"])
        arch["target_feature_sizes"] = tuple(arch.get("target_feature_sizes", ()))
        net = EncoderDecoder(TransformerConfig(**arch))
        net.load_state_dict(state)
        net.to(device=device, dtype=dtype)
        text = TextTokenizer.from_file(directory / config["text_tokenizer"])
        target = load_target(directory / config["target"], device=device)
        return cls(net, text, target, sampling=config.get("sampling"), corpus=CorpusDrafts.load(directory))

    # -- public API -------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompts: Sequence[str], num_samples: int = 1, cfg_scale: float = UNSET,
                 temperature: float = UNSET, top_k: int | None = UNSET, top_p: float | None = UNSET,
                 seed: int | Sequence[int] | None = None, rerank: bool | Scorer = False, use_cache: bool = True,
                 batch_size: int = 64, prefix: torch.Tensor | None = None,
                 progress: bool = False, compile: bool = False, speculative: bool | int = False,
                 on_step: Callable[[int, torch.Tensor], None] | None = None,
                 stats: SpeculativeStats | None = None) -> list[list]:
        """Sample ``num_samples`` outputs for each prompt.

        ``cfg_scale``, ``temperature``, ``top_k``, ``top_p``: left out, the bundle's settings
        (``self.sampling``); given, they override it, and ``top_k=None`` / ``top_p=None`` turn that
        filter off even where the bundle sets one.
        ``seed`` fixes the samples: sample ``j`` of a prompt depends only on (seed, j) and the prompt,
        not on which other prompts share the batch; a list gives each prompt its own seed (requests
        from different users then share one batch and get what they would have got alone).
        ``rerank=True`` orders each prompt's samples by the model's own conditional minus
        unconditional log-likelihood (best first); a callable ``scorer(prompt, outputs) -> scores`` ranks
        with an external model (e.g. CLIP) instead.
        ``compile=True`` runs single-token steps through ``torch.compile`` with CUDA graphs (GPU; the
        first call compiles, later calls of the same batch shape reuse it).
        ``speculative``: ``True`` (or a window size) samples by speculative Jacobi decoding, several
        tokens per decoder pass from the same distribution (greedy: the same tokens); see docs/sampling.md.
        ``stats`` (speculative only) gathers the passes made and tokens sampled over all batches.
        ``on_step(first_row, tokens)`` is called after every decoding step with the tokens so far of
        rows ``first_row …`` (rows are prompt-major, ``num_samples`` per prompt): progressive previews
        (sequential decoding only).
        """
        window = speculative_window(speculative, self.target)
        if window and not use_cache:
            raise ValueError("speculative decoding needs the KV cache (use_cache=True)")
        if window and on_step is not None:
            raise ValueError("on_step previews follow sequential decoding; leave speculative off to use them")
        if stats is not None and not window:
            raise ValueError("stats counts what speculative decoding did: pass speculative=True with it")
        s = self.sampling.override(cfg_scale=cfg_scale, temperature=temperature, top_k=top_k, top_p=top_p)
        self._check(prompts, num_samples, batch_size)
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
        seeds = [int(x) for x in seed] if isinstance(seed, Sequence) else [int(seed)] * len(prompts)
        if len(seeds) != len(prompts):
            raise ValueError(f"seed must be one int or one per prompt: got {len(seeds)} for {len(prompts)} prompts")

        rows = [(p, j, row_seed) for p, row_seed in zip(prompts, seeds) for j in range(num_samples)]
        null_ids, null_mask = self._text([""])  # one unconditional row, shared by every row of a batch
        tokens = []
        chunks = range(0, len(rows), batch_size)
        if progress:
            chunks = tqdm(chunks, desc="sampling", unit="batch")
        for start in chunks:
            chunk = rows[start : start + batch_size]
            text_ids, text_mask = self._text([p for p, _, _ in chunk])
            row_seeds = [zlib.crc32(f"{x}:{j}".encode()) for _, j, x in chunk]
            row_prefix = None if prefix is None else prefix.to(self.device).expand(len(chunk), -1)
            hook = None if on_step is None else (lambda t, first=start: on_step(first, t))
            kw = dict(uncond_ids=null_ids, uncond_mask=null_mask, cfg_scale=s.cfg_scale, temperature=s.temperature,
                      top_k=s.top_k, top_p=s.top_p, seeds=row_seeds, prefix=row_prefix, compile=compile)
            if window:
                batch_stats = SpeculativeStats()
                tokens.append(generate_speculative(self.net, text_ids, text_mask, self.target, window=window,
                                                   stats=batch_stats, corpus=self.corpus, **kw))
                if stats is not None:
                    stats.passes += batch_stats.passes
                    stats.tokens += batch_stats.tokens
                    stats.row_passes += batch_stats.row_passes
            else:
                tokens.append(sample_tokens(self.net, text_ids, text_mask, self.target, use_cache=use_cache,
                                            on_tokens=hook, **kw))
        width = max(t.shape[1] for t in tokens)
        pad = self.target.pad_id if self.target.pad_id is not None else 0
        tokens = torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad) for t in tokens])
        outputs = self.target.batch_decode(tokens)
        per_prompt = [outputs[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]
        if rerank:
            per_prompt = [self._rerank(p, outs, tokens[i * num_samples : (i + 1) * num_samples], rerank)
                          for i, (p, outs) in enumerate(zip(prompts, per_prompt))]
        return per_prompt

    def complete(self, prompt: str, svg_prefix: str, num_samples: int = 1, fill: int | None = None,
                 **kwargs) -> list:
        """Finish a partly drawn SVG: its paths are kept as forced first tokens (SVG models only).

        ``fill=k`` redraws path ``k`` (0-based) in place instead, IconShop's fill-in-the-middle: the
        other paths are the context (``… HOLE … MIDDLE``) and the model writes the missing one. That
        works as well as the export was trained for it (its target's ``fim_rate`` > 0).
        """
        if getattr(self.target, "encode_prefix", None) is None:
            raise ValueError(f"complete() needs an SVG model; this one writes {self.target.kind!r} tokens")
        prefix = self.target.encode_prefix(svg_prefix) if fill is None else self.target.encode_fill(svg_prefix, fill)
        return self.generate([prompt], num_samples=num_samples, prefix=prefix.unsqueeze(0), **kwargs)[0]

    # -- helpers ----------------------------------------------------------------------------
    def _text(self, prompts: list[str]):
        ids, mask = self.text_tokenizer.encode(prompts, max_len=self.net.config.max_text_len, warn=True)
        return ids.to(self.device), mask.to(self.device)

    def _rerank(self, prompt: str, outputs: list, tokens: torch.Tensor, rerank) -> list:
        if callable(rerank):
            scores = torch.as_tensor([float(s) for s in rerank(prompt, outputs)])
        else:
            scores = rerank_scores(self.net, *self._text([prompt] * len(outputs)),
                                   *self._text([""] * len(outputs)), tokens, self.target).cpu()
        order = torch.argsort(scores, descending=True, stable=True).tolist()
        return [outputs[i] for i in order]

    @staticmethod
    def _check(prompts, num_samples, batch_size) -> None:
        if isinstance(prompts, str):
            raise ValueError("prompts must be a list of strings, not a single string")
        if not prompts:
            raise ValueError("prompts is empty: give at least one prompt")
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise ValueError(f"prompt {i} is a {type(p).__name__}, not a string")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")

