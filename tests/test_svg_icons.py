"""Material Design icons round trip through the tokenizer, and the sample-quality metrics."""

import warnings

import numpy as np
import pytest

from argen.svg import SVGError, SVGTokenizer
from argen.svg.metrics import (
    novelty,
    pairwise_iou,
    raster_iou,
    raster_masks,
    uniqueness,
    validity,
)


def mdi_icons() -> list:
    """All icons of ``material_design_icons_pack`` (module attributes of type ``Icon``)."""
    m = pytest.importorskip("material_design_icons_pack")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated icons warn on access
        return [getattr(m, n) for n in sorted(dir(m)) if isinstance(getattr(m, n), m.Icon)]


def round_trip(icons, grid: int) -> tuple[float, float, np.ndarray]:
    tok = SVGTokenizer(grid=grid)
    ious, lengths, failed = [], [], 0
    for icon in icons:
        try:
            ids = tok.encode(icon.svg)
        except SVGError:
            failed += 1
            continue
        lengths.append(len(ids))
        ious.append(raster_iou(icon.svg, tok.decode(ids), 64))
    return 1 - failed / len(icons), float(np.mean(ious)), np.array(lengths)


def test_there_are_7447_icons():
    assert len(mdi_icons()) == 7447


def test_icon_subset_round_trips_at_grid_200():
    icons = mdi_icons()[::25]
    rate, iou, lengths = round_trip(icons, 200)
    assert len(icons) >= 290
    assert rate >= 0.99 and iou >= 0.97, (rate, iou)
    assert np.percentile(lengths, 95) <= 512


@pytest.mark.slow
def test_all_icons_round_trip_at_grid_200():
    rate, iou, lengths = round_trip(mdi_icons(), 200)
    print(f"encode rate {rate:.4f}, mean IoU {iou:.4f}, "
          f"length p50/p90/p99/max {np.percentile(lengths, [50, 90, 99, 100])}")
    assert rate >= 0.99 and iou >= 0.97


NS = 'xmlns="http://www.w3.org/2000/svg"'
A = f'<svg {NS} viewBox="0 0 24 24"><rect x="2" y="2" width="10" height="10"/></svg>'
A_NUDGED = f'<svg {NS} viewBox="0 0 24 24"><rect x="2.02" y="2" width="10" height="10"/></svg>'
B = f'<svg {NS} viewBox="0 0 24 24"><circle cx="16" cy="16" r="6"/></svg>'
C = f'<svg {NS} viewBox="0 0 24 24"><path d="M2 22L12 2L22 22Z"/></svg>'
BLANK = f'<svg {NS} viewBox="0 0 24 24"/>'


def test_raster_iou():
    assert raster_iou(A, A) == 1.0 and raster_iou(BLANK, BLANK) == 1.0
    assert raster_iou(A, BLANK) == 0.0
    assert raster_iou(A, A_NUDGED) >= 0.98
    half = f'<svg {NS} viewBox="0 0 24 24"><rect x="2" y="2" width="5" height="10"/></svg>'
    assert raster_iou(A, half) == pytest.approx(0.5, abs=0.02)
    assert raster_iou(A, half, soft=True) == pytest.approx(0.5, abs=0.02)


def test_validity_needs_strict_parse_and_render():
    unsupported = f'<svg {NS} viewBox="0 0 24 24"><text>A</text></svg>'
    assert validity([A, "<svg", unsupported, B]) == 0.5


def test_uniqueness_counts_samples_with_no_identical_twin():
    assert uniqueness([A, A_NUDGED, B, C]) == 0.5
    assert uniqueness([A, B, C]) == 1.0
    assert uniqueness([A, "broken"]) == 1.0  # invalid samples are left out


def test_novelty_against_svgs_or_precomputed_masks():
    assert novelty([A, B, C], [A_NUDGED, BLANK]) == pytest.approx(2 / 3)
    masks, valid = raster_masks([A_NUDGED, BLANK, "broken"])
    assert valid.tolist() == [True, True, False]
    assert novelty([A, B, C], masks[valid]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="shape"):
        novelty([A], masks[:, :10])


def test_pairwise_iou_matches_direct_computation():
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 100)) < 0.3, rng.random((7, 100)) < 0.5
    b[0] = False
    got = pairwise_iou(a, b, block=3)
    for i in range(5):
        for j in range(7):
            u = (a[i] | b[j]).sum()
            assert got[i, j] == pytest.approx((a[i] & b[j]).sum() / u if u else 1.0)
