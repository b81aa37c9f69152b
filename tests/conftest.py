import os

# Before torch loads: OpenMP threads that spin-wait stall each other on a busy 2-core CI box.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


import pytest  # noqa: E402  (the environment above must be set before anything imports torch)


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

    import torch
    import yaml

    from argen.svg import SVGTokenizer
    from argen.text import TextTokenizer
    from argen.transformer.lit import Seq2SeqModule
    from argen.transformer.model import EncoderDecoder, config_from_preset
    from argen.vqgan import VQGAN, ImageTarget, ImageTokenizer, VQGANConfig

    root = tmp_path_factory.mktemp("tiny-exports")
    torch.manual_seed(0)
    vq = VQGAN(VQGANConfig(image_size=32, patch_size=8, dim=32, enc_layers=1, dec_layers=1, heads=2, mlp_dim=64,
                           codebook_size=64, code_dim=8, kmeans_init=False))
    ImageTokenizer(vq).save_pretrained(root / "tokenizer")
    prompts = ["a red circle", "a blue square", "a green star above a yellow triangle", "home", "heart", "bell"]
    text = TextTokenizer.train(prompts * 8, 64)

    def export(target, run: str):
        module = Seq2SeqModule(target=target, preset="demo")
        module.net = EncoderDecoder(config_from_preset(
            "demo", text_vocab_size=text.vocab_size, max_text_len=16, target_vocab_size=target.vocab_size,
            max_target_len=target.max_len, target_feature_sizes=tuple(target.feature_sizes), d_model=32,
            n_heads=2, enc_layers=1, dec_layers=1, d_ff=64))
        module.text_tokenizer = text
        recipe = {"trainer": {"max_steps": 123}, "model": {"init_args": {"sample_prompts": prompts[:3]}},
                  "data": {"init_args": {"train_shards": "data/tiny/train-*.tar", "batch_size": 8}}}
        (root / run).mkdir()
        (root / run / "config.yaml").write_text(yaml.safe_dump(recipe))
        (root / run / "eval").mkdir()
        (root / run / "eval" / "metrics.json").write_text(json.dumps({"metrics": {"accuracy": 0.25}}))
        return module.export(root / run / "export")

    return {"image": export(ImageTarget(str(root / "tokenizer")), "image-run"),
            "svg": export(SVGTokenizer(grid=16, max_len=48, fim_rate=0.5), "svg-run")}
