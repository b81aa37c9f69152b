"""benchmarks/gpu_wheels.py, which picks the wheels to carry to the offline GPU machine: no network here.

A wrong pick shows up only on that machine, where nothing can be fetched: so check that the runtime
requirements come from setup.cfg, that preinstalled, torch and CUDA distributions are never fetched,
and that the walk follows extras and the target's markers (CPython 3.12 on Linux, not this interpreter).
"""

import re
import zipfile
from pathlib import Path

from toys import load_benchmark

gw = load_benchmark("gpu_wheels")
ROOT = Path(__file__).resolve().parents[1]


def test_preinstalled_list_parses():
    names = gw.read_preinstalled(ROOT / "benchmarks" / "gpu-preinstalled.txt")
    assert {"torch", "numpy", "lightning", "nvidia-cublas", "typing-extensions", "pyyaml"} <= names
    assert len(names) == 197 and all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", n) for n in names)
    assert not {"wandb", "webdataset", "vector-quantize-pytorch", "jsonargparse"} & names  # fetched ones


def test_runtime_requirements_are_setup_cfg_install_requires():
    text = (ROOT / "setup.cfg").read_text()
    block = re.search(r"^install_requires =\n((?:[ \t]+\S.*\n)+)", text, re.M).group(1)  # read naively
    assert gw.runtime_requirements(ROOT / "setup.cfg") == [line.strip() for line in block.splitlines()]
    assert "jsonargparse[signatures]>=4.32" in gw.runtime_requirements(ROOT / "setup.cfg")


def test_runtime_requirements_skip_comments_and_keep_extras_and_markers(tmp_path):
    cfg = tmp_path / "setup.cfg"
    cfg.write_text(
        "[metadata]\nname = x\n[options]\ninstall_requires =\n    torch>=2.3,<2.15\n\n    # a comment\n"
        "    jsonargparse[signatures]>=4.32  # why\n    tomli; python_version < '3.11'\n"
        "[options.extras_require]\ndev = pytest\n"
    )
    assert gw.runtime_requirements(cfg) == [
        "torch>=2.3,<2.15",
        "jsonargparse[signatures]>=4.32",
        "tomli; python_version < '3.11'",
    ]


def test_fetchable_drops_preinstalled_torch_and_cuda():
    names = ["Vector_Quantize.PyTorch", "wandb", "torch", "triton", "nvidia-cublas-cu12", "cuda-bindings"]
    assert [n for n in names if gw.fetchable(n, {"vector-quantize-pytorch"})] == ["wandb"]
    assert [n for n in names if gw.fetchable(n, set())] == ["Vector_Quantize.PyTorch", "wandb"]


def wheel(folder, name, version, requires=()):
    """A minimal wheel: just the METADATA that gpu_wheels reads."""
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", meta)
    return path


INDEX = {  # name: {version: Requires-Dist}
    "app": {
        "1.0": [
            "lib>=1",
            "Jsonargparse[signatures]>=4",
            "torch>=2",
            "nvidia-cublas-cu12",
            "tomli; python_version < '3.11'",
            "pywin32; sys_platform == 'win32'",
            "new-in-312; python_version >= '3.12'",
        ]
    },
    "jsonargparse": {"4.5": ["pyyaml", "docstring-parser; extra == 'signatures'", "argcomplete; extra == 'shtab'"]},
    "lib": {"1.5": [], "2.0": ["later-dep"]},
    "picky": {"1.0": ["lib>=2"]},
    "new-in-312": {"1.0": ["picky"]},
    "docstring-parser": {"0.17": []},
    "later-dep": {"1.0": []},
}


def fake_download(folder, calls, index=INDEX):
    """`download` for gw.resolve: the newest version in range in `index`, as a wheel; records each batch."""

    def download(reqs):
        calls.append(sorted(reqs))
        paths = []
        for text in reqs:
            req = gw.Requirement(text)
            version = max(req.specifier.filter(index[req.name]), key=gw.Version)
            paths.append(wheel(folder, req.name, version, index[req.name][version]))
        return paths

    return download


def test_resolve_walks_extras_and_target_markers_and_stops_at_preinstalled(tmp_path):
    calls = []
    chosen = gw.resolve(["app", "numpy>=1.24"], {"pyyaml", "numpy"}, fake_download(tmp_path, calls))
    versions = {name: version for name, (version, _) in chosen.items()}
    assert versions == {
        "app": "1.0",
        "jsonargparse": "4.5",
        "docstring-parser": "0.17",
        "lib": "2.0",
        "later-dep": "1.0",
        "new-in-312": "1.0",
        "picky": "1.0",
    }
    fetched = {re.match(r"[\w-]+", r).group() for batch in calls for r in batch}
    assert not fetched & {"numpy", "pyyaml", "torch", "nvidia-cublas-cu12", "tomli", "pywin32", "argcomplete"}


def test_resolve_fetches_again_when_a_later_requirement_narrows_a_range(tmp_path):
    calls, index = [], {**INDEX, "narrow": {"1.0": ["lib<2"]}}
    chosen = gw.resolve(["lib", "narrow"], set(), fake_download(tmp_path, calls, index))
    assert chosen["lib"][0] == "1.5" and chosen["lib"][1].name.startswith("lib-1.5")
    assert calls == [["lib", "narrow"], ["later-dep", "lib<2"]]  # lib 2.0's later-dep stays: a greedy walk


def test_unmet_names_missing_wheels_and_wrong_known_versions(tmp_path):
    wheels = [
        wheel(tmp_path, "wandb", "0.31", ["pydantic>=2", "protobuf", "numpy>=3", "click; sys_platform == 'win32'"]),
        wheel(tmp_path, "pydantic", "1.0", ["typing-extensions", "extra-only; extra == 'email'"]),
    ]
    problems = gw.unmet(
        ["wandb>=0.17", "torch>=2.3,<2.15", "gone>=1"], wheels, {"protobuf", "numpy", "torch", "typing-extensions"}
    )
    assert problems == [
        "argen needs gone>=1: not fetched and not on the GPU image",
        "wandb 0.31 needs pydantic>=2, but pydantic is 1.0",
        "wandb 0.31 needs numpy>=3, but numpy is 2.5.2",
    ]


def test_backstop_fetches_a_preinstalled_distribution_only_under_an_unknown_lower_bound():
    pre = {"protobuf", "numpy", "requests", "torch"}
    req = gw.Requirement
    assert gw.backstop(req("protobuf>=6.33.5"), pre)  # the image's version is unknown
    assert not gw.backstop(req("numpy>=1.24"), pre)  # known (2.5.2) and enough
    assert gw.backstop(req("numpy>=3"), pre)  # known and too old
    assert not gw.backstop(req("requests"), pre)  # any version will do
    assert not gw.backstop(req("torch>=2.3"), pre)  # never fetched
    assert not gw.backstop(req("wandb>=0.17"), pre)  # not preinstalled: fetched anyway, not as a backstop


def test_missing_installs_what_this_python_lacks_or_holds_too_old(tmp_path):
    import pytest as installed

    major = int(installed.__version__.split(".")[0])
    carried = [wheel(tmp_path, "pytest", f"{major + 1}.0"), wheel(tmp_path, "no-such-distribution-here", "1.0")]
    # this pytest will do for every requirement: the image's copy stays, the absent one is installed
    assert gw.missing(["pytest>=1"], carried) == carried[1:]
    # a carried wheel that needs a newer pytest than the one here: the carried pytest is installed
    needs_newer = wheel(tmp_path, "needs-newer", "1.0", [f"pytest>={major + 1}"])
    assert gw.missing(["pytest>=1"], [*carried, needs_newer]) == [*carried, needs_newer]
