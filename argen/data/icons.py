"""The Material Design icons of ``material-design-icons-pack``: the record reader that the eight-set
corpus (:mod:`argen.data.iconcorpus`) uses for ``mdi``, and the slug captions and split behind
``eval/icons-heldout.tsv``.

Caption = the slug's words ("account-arrow-down-outline" -> "account arrow down outline"). The
validation split holds out ~5% of icons by a hash of the slug without its "-outline" suffix, so
an icon and its outline variant always fall on the same side and validation measures
generalization, not recall of a near-copy.
"""

from __future__ import annotations

import hashlib

VAL_PERCENT = 5


def load_icons() -> list[tuple[str, str]]:
    """All icons as ``(slug, svg text)``, sorted by slug."""
    return [(icon.slug, icon.svg) for icon in mdi_records()]


def mdi_records(pack=None) -> list:
    """The icon records (slug, svg, version, ...) of ``material_design_icons_pack`` (or the module
    ``pack`` laid out the same way), sorted by slug: the package ships Python records, not files."""
    if pack is None:
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
