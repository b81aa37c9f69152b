"""The one image preprocessing path (argen.images): modes, orientation, resize, and the guarantee it
exists for: a picture gets the same tokens through ``ImageTokenizer.encode`` as through training's
shard decoder."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from test_data import encoded, gradient  # the shard tests' picture helpers (pytest puts tests/ on sys.path)

from argen.data.shards import make_loader, write_shards
from argen.images import prepare_image, resize_center_crop, to_pil, to_rgb, to_tensor
from argen.vqgan import VQGAN, ImageTarget, ImageTokenizer, VQGANConfig

SIZE = 32


def textured(w, h, seed=0):
    """A gradient with blobs: enough detail that resampling differences change codes."""
    rng = np.random.default_rng(seed)
    base = np.asarray(gradient(w, h), dtype=np.float32)
    blobs = np.asarray(Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)).resize((w, h),
                                                                                                Image.BICUBIC))
    return Image.fromarray((0.5 * base + 0.5 * blobs).astype(np.uint8))


def pictures() -> dict[str, tuple[str, bytes]]:
    """The cases the issue names, each as a file would arrive: (extension, encoded bytes). Odd sizes,
    so that a crop rounded to whole pixels differs from the centred one."""
    i16 = (np.linspace(0, 65535, 90, dtype=np.float64)[None, :] * np.linspace(0.2, 1, 70)[:, None]).astype(np.uint16)
    palette = textured(51, 37, 1).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    alpha = Image.fromarray(np.linspace(0, 255, 53 * 39).reshape(39, 53).astype(np.uint8))
    la = Image.merge("LA", (textured(53, 39, 2).convert("L"), alpha))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers turn it 90° clockwise
    return {
        "rgb_jpeg_300x200": ("jpg", encoded(textured(300, 200, 3), "JPEG", quality=90)),
        "png_16bit": ("png", encoded(Image.fromarray(i16), "PNG")),
        "palette_png_transparency": ("png", encoded(palette, "PNG", transparency=0)),
        "la_png": ("png", encoded(la, "PNG")),
        "cmyk_jpeg": ("jpg", encoded(textured(67, 45, 4).convert("CMYK"), "JPEG", quality=90)),
        "exif_rotated_jpeg": ("jpg", encoded(textured(61, 43, 5), "JPEG", quality=90, exif=exif)),
    }


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = VQGAN(VQGANConfig(image_size=SIZE, patch_size=4, dim=32, enc_layers=1, dec_layers=1, heads=2,
                              mlp_dim=64, codebook_size=64, code_dim=8, kmeans_init=True)).train()
    model(torch.rand(64, 3, SIZE, SIZE) * 2 - 1)  # k-means init: codes spread over real inputs
    out = tmp_path_factory.mktemp("tok") / "tok"
    ImageTokenizer(model).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def through_training(tokenizer_dir, tmp_path_factory):
    """name -> (pixels, tokens) as training sees them: a real tar shard, the shard decoder, the
    collate, then ImageTarget.encode_batch (the call the Lightning module makes)."""
    folder = tmp_path_factory.mktemp("shards")
    rows = [{"__key__": name, ext: data, "txt": f"a picture: {name}"} for name, (ext, data) in pictures().items()]
    write_shards(iter(rows), folder, "val", per_shard=4, progress=False)
    target = ImageTarget(str(tokenizer_dir))
    out = {}
    for batch in make_loader(str(folder / "val-*.tar"), train=False, batch_size=3, image_size=SIZE):
        tokens = target.encode_batch(batch)
        for i, key in enumerate(batch["key"]):
            out[key] = (batch["image"][i], tokens[i])
    assert sorted(out) == sorted(pictures())
    return out


@pytest.mark.parametrize("name", sorted(pictures()))
def test_api_and_training_give_identical_tokens(name, tokenizer_dir, through_training, tmp_path):
    ext, data = pictures()[name]
    path = tmp_path / f"picture.{ext}"
    path.write_bytes(data)
    tok = ImageTokenizer.from_pretrained(tokenizer_dir)
    pixels, tokens = through_training[name]
    for source in (Image.open(io.BytesIO(data)), data, path, str(path)):
        assert torch.equal(tok._as_tensor(source)[0], pixels), f"{name}: pixels differ ({type(source).__name__})"
        assert torch.equal(tok.encode(source)[0], tokens), f"{name}: tokens differ ({type(source).__name__})"
        assert torch.equal(tok.encode([source, source]), torch.stack([tokens, tokens]))


def test_tokens_see_what_the_picture_shows(tokenizer_dir):
    """The check above is only worth something if preprocessing matters to the codes."""
    tok = ImageTokenizer.from_pretrained(tokenizer_dir)
    img = textured(300, 200, 3)
    assert not torch.equal(tok.encode(img), tok.encode(img.transpose(Image.Transpose.ROTATE_90)))


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (60, 40), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 30, 40))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90° clockwise to view: the blue half ends up on top
    up = np.asarray(prepare_image(encoded(img, "PNG", exif=exif), None))
    assert up.shape == (60, 40, 3)
    assert up[5, 20, 2] > 200 and up[55, 20, 0] > 200


def test_prepare_image_sizes_and_errors(tmp_path):
    out = prepare_image(encoded(gradient(300, 200), "JPEG"), 24)
    assert out.mode == "RGB" and out.size == (24, 24)
    big = encoded(gradient(1200, 800), "JPEG")  # decoded at reduced scale: still at least 24
    assert prepare_image(Image.open(io.BytesIO(big)), 24).size == (24, 24)
    assert prepare_image(big, None).size == (1200, 800)
    with pytest.raises(TypeError, match="bytes, a file path or a PIL image"):
        prepare_image(np.zeros((4, 4, 3)), 8)
    with pytest.raises(ValueError, match="positive int"):
        prepare_image(big, 0)
    with pytest.raises(FileNotFoundError):
        prepare_image(tmp_path / "missing.png", 8)


def test_tensor_round_trip():
    imgs = [gradient(8, 8), gradient(8, 8).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    x = to_tensor(imgs)
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert [np.asarray(a).tolist() for a in to_pil(x)] == [np.asarray(a).tolist() for a in imgs]
    assert torch.equal(to_tensor([np.asarray(i) for i in imgs]), x)


def test_mode_conversion():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 255, 0))
    rgba.putpixel((1, 1), (0, 0, 255, 255))
    out = np.asarray(to_rgb(rgba))
    assert out.shape == (4, 4, 3) and tuple(out[0, 0]) == (255, 255, 255) and tuple(out[1, 1]) == (0, 0, 255)
    la = Image.new("LA", (2, 2), (0, 128))
    assert tuple(np.asarray(to_rgb(la))[0, 0]) == (127, 127, 127)
    i16 = Image.fromarray(np.array([[0, 32896, 65535]], np.uint16))
    assert np.asarray(to_rgb(i16))[0, :, 0].tolist() == [0, 128, 255]
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert np.asarray(to_rgb(f))[0, :, 0].tolist() == [0, 128, 255]
    for mode in ("L", "1", "P", "CMYK", "YCbCr", "RGB", "I"):
        img = to_rgb(gradient(6, 5).convert(mode))
        assert img.mode == "RGB" and img.size == (6, 5)


def test_resize_center_crop():
    img = Image.new("RGB", (60, 20), (255, 0, 0))
    img.paste((0, 255, 0), (20, 0, 40, 20))  # the centre square is green
    out = np.asarray(resize_center_crop(img, 10))
    assert out.shape == (10, 10, 3) and (out[..., 1] > 200).all()
    tall = resize_center_crop(Image.new("RGB", (16, 50)), 32)
    assert tall.size == (32, 32)
