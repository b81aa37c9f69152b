"""benchmarks/gpu_check.py, the one prepared pass on a GPU: its scheduling and judging, here on CPU.

GPU time comes a quarter of an hour at a time, so the driver must keep going past a failed check,
skip only what depends on it, give the speed checks the device to themselves, and stop a check at
its time limit. The whole pass at toy sizes (``--device cpu``) is in the slow suite.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from toys import load_benchmark

gc = load_benchmark("gpu_check")
ROOT = Path(__file__).resolve().parents[1]


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def stamp(path: Path, name: str, sleep: float = 0.0) -> list[str]:
    """A command that records when it started and ended (wall clock) in ``path/name``."""
    return py(f"import time, pathlib; t = time.time(); time.sleep({sleep}); "
              f"pathlib.Path({str(path)!r}, {name!r}).write_text(f'{{t}} {{time.time()}}')")


def test_needed_pulls_in_prerequisites_only():
    todo = gc.needed(gc.checks(Path("/tmp/w"), gc.CPU), {"sample-cli"})
    assert [c.name for c in todo] == ["env", "prepare", "fit-tokenizer-eager", "fit-iconshop-eager",
                                      "fit-parti-demo-eager", "sample-cli"]
    with pytest.raises(SystemExit, match="unknown checks"):
        gc.needed(gc.checks(Path("/tmp/w"), gc.CPU), {"nope"})


def test_a_failure_skips_its_dependents_and_the_rest_go_on(tmp_path, capsys):
    todo = [
        gc.Check("broken", py("import sys; print('boom'); sys.exit(3)"), 10),
        gc.Check("after-broken", py("pass"), 10, after=("broken",)),
        gc.Check("slow", stamp(tmp_path, "slow", 0.6), 10),
        gc.Check("hangs", py("import time; time.sleep(60)"), 1),
        gc.Check("speed", stamp(tmp_path, "speed"), 10, exclusive=True),
    ]
    gc.run_all(todo, tmp_path, jobs=4, budget_s=60, slower=1)
    status = {c.name: c.status for c in todo}
    assert status == {"broken": "FAIL", "after-broken": "SKIP", "slow": "PASS", "hangs": "FAIL", "speed": "PASS"}
    assert todo[0].summary == "rc 3: boom"
    assert "timed out" in todo[3].summary and todo[3].seconds < 5
    slow_end = float((tmp_path / "slow").read_text().split()[1])
    speed_start = float((tmp_path / "speed").read_text().split()[0])
    assert speed_start >= slow_end  # the exclusive check waited for the concurrent ones
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("RESULT")]
    assert len(lines) == len(todo) and "RESULT after-broken SKIP 0.0s needs broken" in lines


def test_a_spent_budget_skips_what_is_left(tmp_path):
    todo = [gc.Check("first", py("import time; time.sleep(1)"), 10),
            gc.Check("second", py("pass"), 10, after=("first",))]
    gc.run_all(todo, tmp_path, jobs=1, budget_s=4, slower=1)  # 4 s, less the 5 s a check needs to start
    assert [c.status for c in todo] == ["SKIP", "SKIP"] and "out of time" in todo[0].summary


def test_fit_is_judged_by_its_steps_loss_and_export(tmp_path):
    check = gc.Check("fit-x", [], 1, judge="fit")
    rich = "`Trainer.fit` stopped: `max_steps=40` reached.\nEpoch 0 4/4 v_num: 6h8r\n    train/loss: 5.395  \n"
    gc.judge(check, 0, rich, tmp_path)
    assert (check.status, check.summary) == ("FAIL", "40 steps, loss 5.395, NO export")
    (tmp_path / "fit-x" / "export").mkdir(parents=True)
    gc.judge(check, 0, rich, tmp_path)
    assert (check.status, check.summary) == ("PASS", "40 steps, loss 5.395, export written")
    tqdm = "Epoch 0: 100%|###| 40/40 [00:03, train/loss=nan, lr=0.001]\r`Trainer.fit` stopped: `max_steps=40` reached."
    gc.judge(check, 0, tqdm, tmp_path)
    assert (check.status, check.summary) == ("FAIL", "40 steps, loss nan, export written")


def test_a_json_check_without_its_result_line_fails(tmp_path):
    check = gc.Check("mfu", [], 1, judge="json")
    gc.judge(check, 0, "warming up\n", tmp_path)
    assert check.status == "FAIL"
    result = {"results": [{"variant": "eager", "mfu": 0.412, "tflops": 407.5, "tokens_per_s": 2.9e5, "batch": 32}],
              "skipped": ["apex-eager: apex not importable"]}
    gc.judge(check, 0, "noise\n" + json.dumps(result) + "\n", tmp_path)
    assert check.status == "PASS" and check.figures == result
    assert check.summary.startswith("eager 41.2% MFU (407.5 TFLOP/s") and "apex not importable" in check.summary


@pytest.mark.slow
def test_the_whole_pass_runs_green_on_cpu(tmp_path):
    """``benchmarks/gpu.sh --device cpu``: every check at toy sizes (FSDP through DDP: Lightning's
    FSDP needs a GPU), the report written where ``$OUT`` says."""
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path / "out"))
    r = subprocess.run([str(ROOT / "benchmarks" / "gpu.sh"), "--device", "cpu", "--work", str(tmp_path / "work")],
                       env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=2400)
    assert r.returncode == 0, r.stdout[-5000:]
    report = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert {c["name"]: c["status"] for c in report["results"]} == {c.name: "PASS" for c in gc.checks(tmp_path, gc.CPU)}
    assert (tmp_path / "out" / "gpu-check.log").stat().st_size > 0


def test_exit_status_fails_on_a_failure_not_on_a_chosen_skip(tmp_path, monkeypatch):
    """``main``: a check left out with --skip (and what needs it) does not turn the pass red; a failed one does."""
    calls = []

    def fake_checks(work, scale):
        calls.append(work)
        return [gc.Check("a", py("pass"), 10), gc.Check("b", py("pass"), 10, after=("a",)),
                gc.Check("c", py(f"import sys; sys.exit({len(calls) - 1})"), 10)]

    monkeypatch.setattr(gc, "checks", fake_checks)
    monkeypatch.chdir(ROOT)  # main() works from the repository root; the fixture restores the cwd after
    argv = ["--device", "cpu", "--work", str(tmp_path / "w"), "--skip", "a"]
    assert gc.main(argv) == 0  # a skipped by choice, b skipped as it needs a, c passes
    report = json.loads((tmp_path / "w" / "gpu-check.json").read_text())
    assert [r["status"] for r in report["results"]] == ["SKIP", "SKIP", "PASS"]
    assert gc.main(argv) == 1  # c fails this time
