"""What every evaluation writes: ``metrics.json``, a readable ``report.md`` with its tables and
grids side by side, the grid PNGs, and (when asked) the same in an offline W&B run under OUT.

One :class:`Report` per run; evaluations add sections, tables and grids in reading order, then
:meth:`Report.write`. W&B gets the flat metrics as its run summary, each table as a
``wandb.Table`` and each grid as a ``wandb.Image``, so ``wandb sync OUT/wandb/offline-run-*``
publishes what the markdown shows.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch

import argen
from argen.grid import image_grid
from argen.slug import slug


def fmt(value: Any, percent: bool = False) -> str:
    """A cell: percentages with one decimal, floats to 4 significant digits, None as '–'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if percent:
            return f"{100 * value:.1f}%"
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None,
                   percent: tuple[str, ...] = ()) -> str:
    """Rows (dicts) -> a GitHub markdown table; ``percent`` names the columns shown as %."""
    if not rows:
        return "_(no rows)_\n"
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c), c in percent) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metrics -> ``{"a/b/c": number}`` (numbers only), as W&B's summary wants them."""
    flat: dict[str, float] = {}
    for k, v in metrics.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(flatten(v, key + "/"))
        elif isinstance(v, bool):
            flat[key] = float(v)
        elif isinstance(v, int | float):
            flat[key] = v
    return flat


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; null reads as "not measured"
    if isinstance(value, Path):
        return str(value)
    return value


def sampling_text(sampling: dict[str, Any]) -> str:
    """``{"cfg_scale": 3.0, "top_p": None, …}`` -> ``"cfg_scale 3, top_p none, …"``."""
    return ", ".join(f"{k} {'none' if v is None else fmt(v)}" for k, v in sampling.items())


class Report:
    """Collects an evaluation's output in reading order and writes it to ``out``.

    Args:
        out: output folder (created).
        title: first heading of ``report.md``.
        config: settings of the run (export path, sample counts, …): in the report, in
            ``metrics.json`` and as the W&B run config.
        wandb: also log to an offline W&B run under ``out/wandb``.
    """

    def __init__(self, out: str | Path, title: str, config: dict[str, Any], wandb: bool = False):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.title, self.config = title, dict(config)
        self.metrics: dict[str, Any] = {}
        self.parts: list[str] = []
        self.summary_rows: list[dict[str, Any]] = []
        self.grids: list[Path] = []
        self.started = time.time()
        self.run = self._wandb_run() if wandb else None

    # -- building ---------------------------------------------------------------------------
    def summary(self, name: str, value: Any, note: str = "", percent: bool = False) -> None:
        """A headline number, shown in the summary table at the top."""
        self.summary_rows.append({"metric": name, "value": fmt(value, percent), "note": note})

    def section(self, heading: str, text: str = "") -> None:
        self.parts.append(f"## {heading}\n\n" + (text.strip() + "\n\n" if text else ""))

    def text(self, text: str) -> None:
        self.parts.append(text.strip() + "\n\n")

    def table(self, name: str, rows: list[dict[str, Any]], columns: list[str] | None = None,
              percent: tuple[str, ...] = ()) -> None:
        """A markdown table here, and a ``wandb.Table`` named ``name``."""
        self.parts.append(markdown_table(rows, columns, percent) + "\n")
        if self.run is not None and rows:
            import wandb  # function-level: heavy, and only with --wandb (as in every method here)

            columns = columns or list(dict.fromkeys(k for r in rows for k in r))
            data = [[_json_safe(r.get(c)) if not isinstance(r.get(c), dict | list) else json.dumps(r.get(c))
                     for c in columns] for r in rows]
            self.run.log({f"table/{name}": wandb.Table(columns=columns, data=data)}, commit=False)

    def grid(self, name: str, images: list, captions: list[str] | None, caption: str, ncol: int = 8,
             cell: int = 96, caption_lines: int = 2) -> Path:
        """Tile ``images`` (PIL or SVG strings) with :func:`argen.grid.image_grid`, save
        ``out/<name>.png``, embed it here and log it to W&B."""
        path = self.out / f"{slug(name)}.png"
        image_grid(images, captions, ncol=ncol, cell=cell, caption_lines=caption_lines).save(path)
        self.grids.append(path)
        self.parts.append(f"![{caption}]({path.name})\n\n*{caption}*\n\n")
        if self.run is not None:
            import wandb  # function-level: heavy, only with --wandb

            self.run.log({f"grid/{slug(name)}": wandb.Image(str(path), caption=caption)}, commit=False)
        return path

    # -- writing ----------------------------------------------------------------------------
    def write(self) -> Path:
        """Write ``metrics.json`` and ``report.md`` (and finish the W&B run); returns report.md."""
        elapsed = time.time() - self.started
        meta = {"argen_version": _version(), "torch": torch.__version__, "host": platform.node(),
                "python": platform.python_version(), "seconds": round(elapsed, 1),
                "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        (self.out / "metrics.json").write_text(json.dumps(
            _json_safe({"config": self.config, "metrics": self.metrics, "run": meta}), indent=2) + "\n")
        head = [f"# {self.title}\n",
                f"argen {meta['argen_version']} · torch {meta['torch']} · {meta['date']} · "
                f"{elapsed:.0f} s · numbers also in [`metrics.json`](metrics.json)\n"]
        if self.summary_rows:
            head.append("## Summary\n\n" + markdown_table(self.summary_rows, ["metric", "value", "note"]))
        settings = "## Settings\n\n```json\n" + json.dumps(_json_safe(self.config), indent=2) + "\n```\n"
        path = self.out / "report.md"
        path.write_text("\n".join(head) + "\n" + "".join(self.parts) + settings)
        if self.run is not None:
            for name in ("metrics.json", "report.md"):  # files in run.dir are uploaded by `wandb sync`
                shutil.copyfile(self.out / name, Path(self.run.dir) / name)
            self.run.summary.update(flatten(self.metrics))
            self.run.log({}, commit=True)
            self.run.finish()
            self.run = None
        return path

    def _wandb_run(self):
        import wandb  # function-level: heavy, only with --wandb

        mode = os.environ.get("WANDB_MODE", "offline")
        return wandb.init(project=os.environ.get("WANDB_PROJECT", "argen"), dir=str(self.out), mode=mode,
                          job_type="eval", name=f"eval-{slug(self.title)}", config=_json_safe(self.config),
                          reinit="finish_previous")


def _version() -> str:
    return argen.__version__
