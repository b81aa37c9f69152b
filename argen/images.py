"""The one image preprocessing path: any picture -> an RGB square of ``size`` pixels.

The shard decoder (training, ``argen.eval tokenizer``, ``argen.data encode``), :meth:`ImageTokenizer.encode`
and any serving code call :func:`prepare_image`, so a picture gets the same tokens through the API as it
got in training. Before this module they differed: the API skipped EXIF orientation and 16-bit scaling
and resized with another filter, which changed 2-100% of a picture's tokens.

The steps, in order, each for a reason:

1. An unopened JPEG is decoded at the smallest libjpeg scale (1/2, 1/4, 1/8) that still covers ``size``
   (``Image.draft``): the slow part of reading a large photo is the full-size decode.
2. EXIF orientation is applied, so a phone photo is upright as every viewer shows it.
3. Any mode becomes RGB: transparency is composited on white (a transparent icon's background is
   white, not the black its zero pixels would give), 16/32-bit and float gray are scaled to 8 bits
   (a bare ``convert`` clips them to white), CMYK and the rest through PIL.
4. The shorter side is resized to ``size`` and the centre square kept, in one bicubic (antialiased)
   resampling pass over the crop box, so nothing is resampled twice.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

ImageSource = bytes | str | os.PathLike | Image.Image
_ORIENTATION = 0x0112  # the EXIF tag, and how to undo each of its values (1 is upright)
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def open_image(source: ImageSource) -> Image.Image:
    """Encoded bytes, a file path or a PIL image -> a PIL image (lazily opened: nothing decoded yet)."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, bytes | bytearray | memoryview):
        return Image.open(io.BytesIO(bytes(source)))
    if isinstance(source, str | os.PathLike):
        return Image.open(source)
    raise TypeError(f"an image must be encoded bytes, a file path or a PIL image, got {type(source).__name__}")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparency is composited on white, 16/32-bit gray scaled to 8 bits."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("L", "RGB") and "transparency" in img.info:
        img = img.convert("RGBA")
    elif img.mode.startswith("I") or img.mode == "F":
        a = np.asarray(img).astype(np.float64)
        hi = 1.0 if img.mode == "F" and a.max(initial=0) <= 1.0 else 255.0
        if img.mode.startswith("I;16") or a.max(initial=0) > 255:
            hi = 65535.0
        img = Image.fromarray(np.clip(a * (255.0 / hi), 0, 255).round().astype(np.uint8), "L")
    if img.mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img).convert("RGB")
    return img.convert("RGB")


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` and crop the centre square, in one resampling pass."""
    w, h = img.size
    if (w, h) == (size, size):
        return img
    s = min(w, h)
    box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
    return img.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)


def prepare_image(source: ImageSource, size: int | None) -> Image.Image:
    """Bytes, a path or a PIL image -> RGB ``size`` x ``size`` (``None``: upright RGB at the stored size).

    A PIL JPEG that is not decoded yet (fresh from ``Image.open``) is decoded at reduced scale, like
    a file or bytes, so ``encode(Image.open(p))`` equals ``encode(p)``; like ``Image.thumbnail``, this
    sets the draft mode of that image object.
    """
    if size is not None and (not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be a positive int, got {size!r}")
    img = open_image(source)
    if size is not None and img.format == "JPEG":
        img.draft(None, (size, size))  # no-op once decoded
    turn = _UPRIGHT.get(img.getexif().get(_ORIENTATION, 1))
    img = to_rgb(img)  # before turning: transpose is defined for every RGB image, not every mode
    if turn is not None:
        img = img.transpose(turn)
    return img if size is None else resize_center_crop(img, size)


def to_tensor(images: Sequence[Image.Image | np.ndarray]) -> torch.Tensor:
    """RGB images (PIL, or (H, W, 3) uint8 arrays) of one size -> float (B, 3, H, W) in [0, 1]."""
    arrays = [np.asarray(im, dtype=np.uint8) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Float (B, 3, H, W) in [0, 1] -> PIL images (the inverse of :func:`to_tensor`, up to rounding)."""
    arr = (images.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]
