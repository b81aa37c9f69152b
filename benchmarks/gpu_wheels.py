"""Helpers for benchmarks/gpu-wheels.sh: which wheels the offline GPU machine needs, fetched here.

The GPU machine has no network but already holds torch, CUDA and ~200 other distributions
(benchmarks/gpu-preinstalled.txt). We fetch only what argen needs beyond those. pip's own resolver
cannot do that: it would resolve (and, as this index serves no PEP 658 metadata, download) torch's
530 MB wheel and every CUDA wheel, and this index lacks some of them anyway. So we walk the
dependency graph ourselves: download each needed wheel with --no-deps, read its Requires-Dist for the
target (CPython 3.12 on x86_64 Linux), and stop at anything preinstalled.

  python3 benchmarks/gpu_wheels.py resolve SETUP_CFG PREINSTALLED STAGE_DIR -- PIP_DOWNLOAD_ARGS...
      downloads the wheels into STAGE_DIR and prints the chosen wheel paths, one a line
  python3 benchmarks/gpu_wheels.py check SETUP_CFG PREINSTALLED WHEEL_DIR
      warns (stderr) about requirements that neither a wheel there nor the GPU image satisfies
  python3 benchmarks/gpu_wheels.py missing SETUP_CFG WHEEL_DIR
      (on the GPU machine) prints the wheels to install: those this Python lacks or holds at a
      version that a requirement rules out
"""

import configparser
import email.parser
import itertools
import re
import subprocess
import sys
import zipfile
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.version import Version
except ImportError:  # pip always carries a copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.version import Version

# The GPU machine, for environment markers (PEP 508): CPython 3.12.3, x86_64 Linux.
TARGET = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_name": "cpython",
    "implementation_version": "3.12.3",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "sys_platform": "linux",
    "os_name": "posix",
    "platform_machine": "x86_64",
}
# Versions known on the GPU image (2026-11-17), to flag a wheel that wants a different one.
KNOWN_VERSIONS = {
    "numpy": "2.5.2",
    "torch": "2.11.0",
    "pytorch-lightning": "2.6.6",
    "safetensors": "0.8.0",
    "tokenizers": "0.23.2",
    "torchmetrics": "1.9.0",
    "transformers": "5.17.0",
    "triton": "3.6.0",
    "huggingface-hub": "1.33.0",
}
# Built for one CUDA and one torch: a copy from here would never match the image's, so never fetch one.
NEVER_FETCH = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")


def normalise(name: str) -> str:
    """PEP 503 name: `Vector_Quantize.PyTorch` and `vector-quantize-pytorch` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements(setup_cfg) -> list[str]:
    """argen's `[options] install_requires`, read from setup.cfg so this never drifts from the package."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(setup_cfg)
    lines = (line.split("#", 1)[0].strip() for line in cfg["options"]["install_requires"].splitlines())
    return [line for line in lines if line]


def read_preinstalled(path) -> set[str]:
    """The normalised names in gpu-preinstalled.txt (one a line, `#` comments)."""
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return {normalise(line) for line in lines if line}


def fetchable(name: str, preinstalled: set[str]) -> bool:
    """Fetch only what the image lacks, and never torch, triton or CUDA wheels."""
    name = normalise(name)
    return name not in preinstalled and not NEVER_FETCH.match(name)


def backstop(req, preinstalled: set[str]) -> bool:
    """Fetch a preinstalled distribution too when a fetched wheel needs at least some version of it
    and the image's version is not known to satisfy that. benchmarks/gpu.sh installs such a wheel only
    where the image's copy is older, so an old image still gets what, e.g., wandb needs."""
    name = normalise(req.name)
    if name not in preinstalled or NEVER_FETCH.match(name):
        return False
    if not any(s.operator in (">=", ">", "~=", "==") for s in req.specifier):
        return False
    known = KNOWN_VERSIONS.get(name)
    return known is None or not req.specifier.contains(Version(known), prereleases=True)


def needed(requires, extras=()) -> list:
    """The Requires-Dist lines that apply on the GPU machine, with these extras requested."""
    out = []
    for line in requires:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({**TARGET, "extra": e}) for e in ("", *extras)):
            out.append(req)
    return out


def wheel_metadata(path):
    """(normalised name, version, Requires-Dist lines) from a wheel's METADATA."""
    with zipfile.ZipFile(path) as zf:
        meta = next(n for n in zf.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        msg = email.parser.Parser().parsestr(zf.read(meta).decode())
    return normalise(msg["Name"]), msg["Version"], msg.get_all("Requires-Dist") or []


def resolve(roots, preinstalled, download) -> dict:
    """Walk the graph from `roots` (requirement strings): {name: (version, wheel path)}.

    `download(list of requirement strings) -> wheel paths` fetches one wheel per requirement
    (pip download --no-deps). Preinstalled distributions are skipped, except as a ``backstop``. A
    greedy walk without backtracking: a name is fetched again when a later requirement narrows its
    range; `check` reports any requirement still unmet.
    """
    spec, extras, chosen, requires = {}, {}, {}, {}
    pending = [Requirement(r) for r in roots]
    from_roots = True  # argen's own lower bounds are old: the image satisfies them
    while pending:
        batch, later = {}, []
        for req in pending:
            name = normalise(req.name)
            if not fetchable(name, preinstalled) and (from_roots or not backstop(req, preinstalled)):
                continue
            spec[name] = spec[name] & req.specifier if name in spec else req.specifier
            new_extras = set(req.extras) - extras.setdefault(name, set())
            extras[name] |= new_extras
            if name in chosen and spec[name].contains(chosen[name][0], prereleases=True):
                later += needed(requires[name], new_extras) if new_extras else []
            else:
                batch[name] = f"{name}{spec[name]}"
        for path in download(list(batch.values())) if batch else []:
            name, version, requires[name] = wheel_metadata(path)
            chosen[name] = (version, Path(path))
            later += needed(requires[name], extras.get(name, ()))
        pending, from_roots = later, False
    return chosen


def pip_download(pip_args, stage):
    """A `download` for `resolve`: pip download --no-deps into a fresh folder of `stage` per call."""
    calls = itertools.count()

    def download(reqs):
        folder = Path(stage) / f"round-{next(calls)}"
        print("fetching:", " ".join(reqs), file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(folder), *pip_args, *reqs]
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        return sorted(folder.glob("*.whl"))

    return download


def unmet(roots, wheels, preinstalled) -> list[str]:
    """Requirements (argen's `roots`, then each wheel's Requires-Dist, extras ignored) that no wheel
    in `wheels` and nothing on the GPU image (at its known version, where known) satisfies."""
    have = {name: (version, reqs) for name, version, reqs in map(wheel_metadata, wheels)}
    owners = [("argen", roots)] + [(f"{n} {v}", reqs) for n, (v, reqs) in have.items()]
    problems = []
    for owner, reqs in owners:
        for req in needed(reqs):
            name = normalise(req.name)
            version = have[name][0] if name in have else KNOWN_VERSIONS.get(name)
            if name not in have and name not in preinstalled:
                problems.append(f"{owner} needs {req}: not fetched and not on the GPU image")
            elif version and not req.specifier.contains(Version(version), prereleases=True):
                problems.append(f"{owner} needs {req}, but {name} is {version}")
    return problems


def missing(roots, wheels) -> list:
    """The carried wheels to install on the GPU machine (benchmarks/gpu.sh runs this there): those
    whose distribution this interpreter lacks, or holds at a version that argen's requirements
    (`roots`) or a carried wheel's rule out. The image's own copies stay wherever they will do."""
    import importlib.metadata

    metas = [wheel_metadata(w) for w in wheels]
    wanted = {}  # name -> the specifiers every requirement on it adds up to
    for req in needed(roots) + [r for _, _, reqs in metas for r in needed(reqs)]:
        name = normalise(req.name)
        wanted[name] = wanted[name] & req.specifier if name in wanted else req.specifier
    out = []
    for wheel, (name, _, _) in zip(wheels, metas):
        try:
            have = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            out.append(wheel)
            continue
        if name in wanted and not wanted[name].contains(have, prereleases=True):
            out.append(wheel)
    return out


def main(argv):
    if argv[:1] == ["missing"]:
        for wheel in missing(runtime_requirements(argv[1]), sorted(Path(argv[2]).glob("*.whl"))):
            print(wheel)
        return
    cmd, setup_cfg, preinstalled, folder, *rest = argv
    roots, pre = runtime_requirements(setup_cfg), read_preinstalled(preinstalled)
    if cmd == "resolve":
        chosen = resolve(roots, pre, pip_download(rest[1:] if rest[:1] == ["--"] else rest, folder))
        print("\n".join(str(path) for _, path in sorted(chosen.values(), key=lambda c: c[1].name)))
    elif cmd == "check":
        for problem in unmet(roots, sorted(Path(folder).glob("*.whl")), pre):
            print("warning: unmet requirement:", problem, file=sys.stderr)
    else:
        sys.exit(f"unknown command {cmd!r}: resolve, check or missing")


if __name__ == "__main__":
    main(sys.argv[1:])
