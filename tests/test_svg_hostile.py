"""Hostile and malformed SVG: every public entry point answers SVGError, fast, in bounded memory."""

import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from argen.svg import SVGError, SVGTokenizer, normalize
from argen.svg.metrics import raster_iou, validity
from argen.svg.rasterize import rasterize

H = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">'
LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + "".join(f'<!ENTITY lol{i + 1} "{("&lol%s;" % (i or "")) * 10}">' for i in range(9))
          + "]>" + H + "<text>&lol9;</text></svg>")
HOSTILE = {
    "billion_laughs": (LAUGHS, "hostile"),
    "external_entity": ('<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                        + H + "<text>&xxe;</text></svg>", "hostile"),
    "external_dtd": ('<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://example.com/svg11.dtd">'
                     + H + "</svg>", "hostile"),
    "non_xml": ("this is { not XML", "malformed"),
    "empty_string": ("", "malformed"),
    "nan_coordinate": (H + '<path d="M NaN 0 L 1 1 L 2 0 Z"/></svg>', "malformed"),
    "inf_coordinate": (H + '<path d="M0 0 L inf 1 L 2 0 Z"/></svg>', "malformed"),
    "overflowing_number": (H + '<path d="M0 0 L 1e400 1 L 2 0 Z"/></svg>', "malformed"),
    "nan_attribute": (H + '<circle cx="NaN" cy="1" r="2"/></svg>', "malformed"),
    "overflow_via_transform": (H + '<g transform="scale(1e300)"><path d="M0 0L1e300 0L0 1e10Z" '
                               'transform="scale(1e300)"/></g></svg>', "malformed"),
    "unknown_path_command": (H + '<path d="M0 0 B 1 1 L 2 0 Z"/></svg>', "malformed"),
    "path_20MB": (H + '<path d="M0 0' + " L1 1" * 4_000_000 + '"/></svg>', "limit"),
    "nested_groups_10000": (H + "<g>" * 10_000 + '<path d="M0 0L1 0L1 1Z"/>' + "</g>" * 10_000 + "</svg>",
                            "limit"),
    "zero_size_viewbox": ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 0 0">'
                          '<path d="M0 0L1 0L1 1Z"/></svg>', "malformed"),
    "use_cycle": (H + '<g id="a"><use href="#a"/></g></svg>', "malformed"),
    "use_exponential": (H + '<path id="p0" d="M0 0L1 0L1 1Z"/>' + "".join(
        f'<g id="p{i + 1}">' + f'<use href="#p{i}"/>' * 10 + "</g>" for i in range(9)) + "</svg>", "limit"),
    "root_not_svg": ('<html><body/></html>', "malformed"),
    "wrong_type": (b"\xff\xfe<svg/>", "malformed"),
}


def _call(fn, text):
    """CPU seconds this process spent refusing ``text`` (wall time would count other jobs on a busy box)."""
    t = time.process_time()
    with pytest.raises(SVGError) as e:
        fn(text)
    return time.process_time() - t, e.value


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_raises_svgerror_quickly(name):
    text, reason = HOSTILE[name]
    tok = SVGTokenizer()
    for fn in (tok.encode, tok.normalize, normalize):
        dt, err = _call(fn, text)
        assert dt < 1.0, f"{name}: {dt:.2f}s"
        assert err.reason == reason, f"{name}: {err.reason}: {err}"
        assert str(err)


@pytest.mark.parametrize("name", ["billion_laughs", "external_entity", "non_xml", "path_20MB",
                                  "nested_groups_10000", "zero_size_viewbox"])
def test_rasterize_refuses_what_the_parser_refuses(name):
    text, _ = HOSTILE[name]
    dt, _ = _call(lambda s: rasterize(s, 32), text)
    assert dt < 1.0
    assert validity([text]) == 0.0
    with pytest.raises(SVGError):
        raster_iou(text, H + "</svg>")


@pytest.mark.parametrize("name", ["billion_laughs", "path_20MB", "nested_groups_10000", "use_exponential"])
def test_hostile_input_uses_bounded_memory(name):
    text, _ = HOSTILE[name]
    tok = SVGTokenizer()
    tracemalloc.start()
    try:
        with pytest.raises(SVGError):
            tok.encode(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"{name}: peak {peak / 2**20:.1f} MiB"


def test_rasterize_never_reads_files(tmp_path):
    secret = tmp_path / "secret.png"
    from PIL import Image
    Image.new("RGB", (8, 8), "black").save(secret)
    for href in (str(secret), f"file://{secret}"):  # resvg itself would load the plain path
        img = rasterize(H + f'<g><image href="{href}" width="24" height="24"/></g></svg>', 16)
        assert img.getextrema() == ((255, 255), (255, 255), (255, 255))  # the image was stripped


def test_bad_batches_are_skipped_not_raised():
    tok = SVGTokenizer(grid=32, max_len=64)
    ids = tok.encode_batch({"svg": [text for text, _ in HOSTILE.values()]})
    assert (ids == tok.pad_id).all()
    assert sum(tok.skipped.values()) == len(HOSTILE)


VALID = (H + '<g transform="rotate(10 12 12)"><path d="M2 2h20v20h-20z m4 4v12h12v-12z" fill-rule="evenodd"/>'
         '<circle cx="12" cy="12" r="3"/><use href="#r"/><rect id="r" x="1" y="1" width="3" height="3" '
         'rx="1"/></g></svg>')


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_svg_raises_only_svgerror(data):
    """Mutate a valid SVG (delete, duplicate, insert junk): never any exception but SVGError."""
    text = VALID
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 12)))
        op = data.draw(st.sampled_from(["delete", "duplicate", "insert"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        else:
            text = text[:i] + data.draw(st.text(alphabet='<>/="#&;:-.,0123456789eEMmLlAaZz ()', max_size=8)) + text[i:]
    tok = SVGTokenizer(grid=32)
    try:
        tok.encode(text)
    except SVGError:
        pass
    try:
        rasterize(text, 8)
    except SVGError:
        pass


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_svgerror(text):
    with pytest.raises(SVGError):
        SVGTokenizer(grid=16).encode(text)
