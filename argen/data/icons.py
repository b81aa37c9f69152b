"""``icons``: the Material Design icons of the PyPI package ``material-design-icons-pack``.

Caption = the slug's words ("account-arrow-down-outline" -> "account arrow down outline"). The
validation split holds out ~5% of icons by a hash of the slug without its "-outline" suffix, so
an icon and its outline variant always fall on the same side and validation measures
generalization, not recall of a near-copy.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from argen.data.shards import default_per_shard, write_shards
from argen.svg.rasterize import rasterize

VAL_PERCENT = 5


def load_icons() -> list[tuple[str, str]]:
    """All icons as ``(slug, svg text)``, sorted by slug."""
    return [(icon.slug, icon.svg) for icon in _icon_records()]


def _icon_records() -> list:
    try:  # here, not at the top: an optional extra, needed only to read the icons
        import material_design_icons_pack as pack
    except ImportError as e:
        raise ImportError("the icons dataset needs the material-design-icons-pack package: "
                          "pip install 'argen[icons]'") from e
    records = [v for k, v in vars(pack).items() if not k.startswith("_") and type(v).__name__ == "Icon"]
    return sorted(records, key=lambda icon: icon.slug)


def caption(slug: str) -> str:
    return " ".join(slug.split("-"))


def split_of(slug: str) -> str:
    """``"train"`` or ``"val"``, deterministically (~5% val), keeping outline variants together."""
    group = slug.removesuffix("-outline")
    bucket = int.from_bytes(hashlib.sha1(group.encode()).digest()[:4], "big") % 100
    return "val" if bucket < VAL_PERCENT else "train"


def samples(split: str, format: str = "svg", size: int = 256):
    """Webdataset samples of one split: ``svg`` (SVG text) or ``png`` (rasterized, RGB on white)."""
    if format not in ("svg", "png"):
        raise ValueError(f"icons format must be 'svg' or 'png', got {format!r}")
    for icon in _icon_records():
        if split_of(icon.slug) != split:
            continue
        text = caption(icon.slug)
        sample: dict[str, Any] = {"__key__": icon.slug, "txt": text,
                                  "json": {"caption": text, "slug": icon.slug, "split": split,
                                           "version": icon.version, "deprecated": icon.deprecated,
                                           "dataset": "icons"}}
        if format == "svg":
            sample["svg"] = icon.svg.encode("utf-8")
        else:
            buf = io.BytesIO()
            rasterize(icon.svg, size).convert("RGB").save(buf, format="PNG")
            sample["png"] = buf.getvalue()
            sample["json"].update(width=size, height=size)
        yield sample


def prepare(out: str | Path, format: str = "svg", size: int = 256, per_shard: int | None = None,
            progress: bool = True) -> dict[str, list[Path]]:
    """Write ``out/train-NNNNNN.tar`` and ``out/val-NNNNNN.tar`` icon shards."""
    counts = {"train": 0, "val": 0}
    for icon in _icon_records():
        counts[split_of(icon.slug)] += 1
    return {split: write_shards(samples(split, format, size), out, split, per_shard or default_per_shard(n),
                                total=n, progress=progress)
            for split, n in counts.items()}
