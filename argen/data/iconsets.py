"""Readers for eight open icon sets, each from the files its PyPI package installs.

Every reader yields :class:`Icon` records (set, name, style, SVG text, tags, licence) from one
package folder, in a fixed order. Where each package keeps its drawings:

- ``mdi``: material-design-icons-pack, the Icon objects of its compiled module; filled, outline.
- ``tabler``: tablericons2, ``tablericons.zip`` (``outline/*.svg`` stroked, ``filled/*.svg``).
- ``remix``: django-static-remixicon, ``static/remixicon/remixicon.glyph.json`` (name -> path data,
  24-unit); ``-fill`` / ``-line``.
- ``fontawesome``: fontawesomefree, ``static/fontawesomefree/svgs/<solid|regular|brands>/*.svg`` and
  ``metadata/icons.json`` (label, search terms, alias names).
- ``bootstrap``: django-js-lib-bootstrap-icons, ``static/bootstrap-icons/*.svg``; outline, ``-fill``.
- ``lucide``: python-lucide, SQLite ``data/lucide-icons.db`` (svg, tags, categories); stroked.
- ``ionicons``: ionicons-python (sdist), ``icons/*.svg``; filled, ``-outline`` (stroked), ``-sharp``.
- ``heroicons``: heroicons, ``heroicons.zip`` (``outline`` stroked, ``solid``, ``mini``, ``micro``).

A reader takes the package's folder (``root``), so tests read small fixtures written in the same
layouts; :func:`package_root` finds the installed one. A set whose package is missing is an error
naming the package.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sqlite3
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from argen.data.icons import mdi_records


@dataclass
class Icon:
    set: str
    name: str  # the set's own identifier, e.g. "heart-outline"
    style: str  # "" when the set has one style
    svg: str
    licence: str
    tags: list[str] = field(default_factory=list)
    label: str = ""  # a human label where the set has one (Font Awesome)

    @property
    def concept(self) -> str:
        return concept_of(self.name, self.style)


@dataclass(frozen=True)
class IconSet:
    key: str
    package: str  # the PyPI distribution
    module: str  # the import name whose folder holds the files
    licence: str
    read: Callable[[Path], Iterator[Icon]]
    stroked: bool  # mostly stroke-drawn (round-trip target 0.95 instead of 0.97)


_STYLE_SUFFIXES = ("outline", "filled", "fill", "line", "sharp", "solid")


def words(name: str) -> str:
    """Identifier -> lower-case words: ``"arrow-left_2"`` -> ``"arrow left 2"``."""
    return " ".join(w for w in re.split(r"[-_\s]+", name.lower()) if w)


def concept_of(name: str, style: str = "") -> str:
    """The concept: the name's words without a style suffix, so ``heart-outline`` (MDI),
    ``heart-fill`` (Remix, Bootstrap), ``heart`` (Lucide) and ``heart-sharp`` (Ionicons) agree."""
    w = words(name).split()
    while len(w) > 1 and (w[-1] in _STYLE_SUFFIXES or (style and w[-1] == style)):
        w.pop()
    return " ".join(w)


def _svg_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.svg") if p.is_file())


# -- readers -------------------------------------------------------------------------------------

def read_mdi(root: Path) -> Iterator[Icon]:
    for icon in mdi_records(importlib.import_module(root.name)):
        style = "outline" if icon.slug.endswith("-outline") else "filled"
        yield Icon("mdi", icon.slug, style, icon.svg, "Apache-2.0")


def read_tabler(root: Path) -> Iterator[Icon]:
    with zipfile.ZipFile(root / "tablericons.zip") as z:
        for member in sorted(z.namelist()):
            style, _, file = member.partition("/")
            if style in ("outline", "filled") and file.endswith(".svg") and "/" not in file:
                yield Icon("tabler", file[:-4], style, z.read(member).decode("utf-8"), "MIT")


def read_remix(root: Path) -> Iterator[Icon]:
    glyphs = json.loads((root / "static" / "remixicon" / "remixicon.glyph.json").read_text("utf-8"))
    for name in sorted(glyphs):
        paths = glyphs[name].get("path") or []
        if not paths:
            continue
        body = "".join(f'<path d="{d}"/>' for d in paths)
        style = name.rsplit("-", 1)[-1] if name.endswith(("-fill", "-line")) else ""
        svg = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="currentColor">{body}</svg>'
        yield Icon("remix", name, style, svg, "Remix Icon License 1.0")


def read_fontawesome(root: Path) -> Iterator[Icon]:
    base = root / "static" / "fontawesomefree"
    meta = json.loads((base / "metadata" / "icons.json").read_text("utf-8"))
    for style in ("solid", "regular", "brands"):
        for path in _svg_files(base / "svgs" / style):
            name = path.stem
            m = meta.get(name, {})
            tags = list(m.get("search", {}).get("terms", []) or [])
            tags += [words(a) for a in (m.get("aliases") or {}).get("names", [])]
            yield Icon("fontawesome", name, style, path.read_text("utf-8"), "CC BY 4.0", _unique(tags),
                       str(m.get("label", "")))


def read_bootstrap(root: Path) -> Iterator[Icon]:
    for path in _svg_files(root / "static" / "bootstrap-icons"):
        if path.stem == "bootstrap-icons":
            continue  # the sprite of every icon (1 MB of <symbol>s), not an icon
        style = "fill" if path.stem.endswith("-fill") else "outline"
        yield Icon("bootstrap", path.stem, style, path.read_text("utf-8"), "MIT")


def read_lucide(root: Path) -> Iterator[Icon]:
    db = sqlite3.connect(f"file:{root / 'data' / 'lucide-icons.db'}?mode=ro", uri=True)
    try:
        tags: dict[str, list[str]] = {}
        for table, col in (("icon_tags", "tag"), ("icon_categories", "category")):
            for name, value in db.execute(f"SELECT name, {col} FROM {table} ORDER BY rowid"):
                tags.setdefault(name, []).append(words(value))
        for name, svg in db.execute("SELECT name, svg FROM icons ORDER BY name"):
            yield Icon("lucide", name, "", svg, "ISC", _unique(tags.get(name, [])))
    finally:
        db.close()


def read_ionicons(root: Path) -> Iterator[Icon]:
    for path in _svg_files(root / "icons"):
        style = next((s for s in ("outline", "sharp") if path.stem.endswith("-" + s)), "filled")
        yield Icon("ionicons", path.stem, style, path.read_text("utf-8"), "MIT")


def read_heroicons(root: Path) -> Iterator[Icon]:
    with zipfile.ZipFile(root / "heroicons.zip") as z:
        for member in sorted(z.namelist()):
            style, _, file = member.partition("/")
            if style in ("outline", "solid", "mini", "micro") and file.endswith(".svg") and "/" not in file:
                yield Icon("heroicons", file[:-4], style, z.read(member).decode("utf-8"), "MIT")


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


SETS: dict[str, IconSet] = {s.key: s for s in [
    IconSet("mdi", "material-design-icons-pack", "material_design_icons_pack", "Apache-2.0", read_mdi, False),
    IconSet("tabler", "tablericons2", "tablericons", "MIT", read_tabler, True),
    IconSet("remix", "django-static-remixicon", "django_static_remixicon", "Remix Icon License 1.0",
            read_remix, False),
    IconSet("fontawesome", "fontawesomefree", "fontawesomefree", "CC BY 4.0", read_fontawesome, False),
    IconSet("bootstrap", "django-js-lib-bootstrap-icons", "js_lib_bootstrap_icons", "MIT", read_bootstrap, False),
    IconSet("lucide", "python-lucide", "lucide", "ISC", read_lucide, True),
    IconSet("ionicons", "ionicons-python", "ionicons_python", "MIT", read_ionicons, False),
    IconSet("heroicons", "heroicons", "heroicons", "MIT", read_heroicons, False),
]}


def package_root(key: str) -> Path:
    """The installed package folder of set ``key``; a clear error naming the package if missing."""
    if key not in SETS:
        raise ValueError(f"unknown icon set {key!r}; known: {', '.join(SETS)}")
    s = SETS[key]
    spec = importlib.util.find_spec(s.module)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"icon set {key!r} needs the package {s.package}: pip install {s.package} "
                         "(or pip install 'argen[icons]' for all eight sets)")
    return Path(list(spec.submodule_search_locations)[0])


def installed() -> list[str]:
    """Keys of the sets whose packages are installed."""
    return [k for k, s in SETS.items() if importlib.util.find_spec(s.module) is not None]


def read_set(key: str, root: str | Path | None = None) -> Iterator[Icon]:
    """All icons of set ``key`` from ``root`` (default: the installed package's folder)."""
    root = package_root(key) if root is None else Path(root)
    yield from SETS[key].read(root)
