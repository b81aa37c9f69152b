import os

# Before torch loads: OpenMP threads that spin-wait stall each other on a busy 2-core CI box.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


import pytest  # noqa: E402  (the environment above must be set before anything imports torch)
from toys import tiny_export, tiny_image_tokenizer


@pytest.fixture(autouse=True)
def _own_eval_cache(tmp_path, monkeypatch):
    """Each test's evaluations cache in its own folder: never the user's ~/.cache, never another test's."""
    monkeypatch.setenv("ARGEN_CACHE", str(tmp_path / "argen-cache"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one thread is as fast, and immune to OpenMP threads that spin-wait for a
    descheduled partner on a busy machine (which made such files ~30x slower under load)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory):
    """An image and an SVG generator, untrained and tiny, written by ImageTokenizer.save_pretrained
    and Seq2SeqModule.export (the code paths training uses), each in a run folder with the recipe
    (``config.yaml``) and evaluation (``eval/metrics.json``) that a trained run leaves beside it."""
    import json

    import yaml

    from argen.svg import SVGTokenizer
    from argen.text import TextTokenizer
    from argen.vqgan import ImageTarget

    root = tmp_path_factory.mktemp("tiny-exports")
    tiny_image_tokenizer(root)
    prompts = ["a red circle", "a blue square", "a green star above a yellow triangle", "home", "heart", "bell"]
    text = TextTokenizer.train(prompts * 8, 64)

    def export(target, run: str):
        recipe = {"trainer": {"max_steps": 123}, "model": {"init_args": {"sample_prompts": prompts[:3]}},
                  "data": {"init_args": {"train_shards": "data/tiny/train-*.tar", "batch_size": 8}}}
        (root / run).mkdir()
        (root / run / "config.yaml").write_text(yaml.safe_dump(recipe))
        (root / run / "eval").mkdir()
        (root / run / "eval" / "metrics.json").write_text(json.dumps({"metrics": {"accuracy": 0.25}}))
        return tiny_export(target, text, root / run / "export", max_text_len=16)

    return {"image": export(ImageTarget(str(root / "tokenizer")), "image-run"),
            "svg": export(SVGTokenizer(grid=16, max_len=48, fim_rate=0.5), "svg-run")}
