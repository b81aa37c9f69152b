"""``argen.serve`` through its client API, in process: a real Gradio server on a free local port,
driven by ``gradio_client`` (and raw HTTP where the client refuses to send a value), on tiny exports.
The batcher is tested on its own too: concurrent requests share one generate call and get exactly
what they would have got alone."""

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the demo extra is not installed: pip install -e '.[demo]'")

from gradio_client import Client  # noqa: E402
from toys import load_benchmark  # noqa: E402

from argen import serve  # noqa: E402
from argen.batcher import Batcher, Busy, Request  # noqa: E402
from argen.generator import Generator  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_thread"),  # tiny models: see conftest.py
              # Gradio's queue calls pandas options that pandas 3 deprecates; not ours to fix.
              pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword is deprecated")]

HOSTILE_SVGS = {
    "not xml": "<svg><path d='M0 0 L1 1'",
    "external entity": ('<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                        '<svg xmlns="http://www.w3.org/2000/svg"><text>&x;</text></svg>'),
    "billion laughs": ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
                       '<svg xmlns="http://www.w3.org/2000/svg">&lol2;</svg>'),
    "script only": '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "not svg": "<html><body>hello</body></html>",
}
SQUARES = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M1 1 L6 1 L6 6 Z"/>'
           '<path d="M9 9 L14 9 L14 14 Z"/><path d="M1 9 L6 9 L6 14 Z"/></svg>')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def running(tiny_exports):
    """A server on both tiny exports, as ``python -m argen.serve`` starts it (limits from the CLI)."""
    args = serve.parse_args([str(tiny_exports["image"]), str(tiny_exports["svg"]), "--max-samples", "4",
                             "--max-prompt-chars", "200", "--batch-wait", "0.3"])
    server = serve.Server(serve.load_models(args.exports, args), serve.Limits(max_samples=4, max_prompt_chars=200))
    demo = serve.build(server)
    port = free_port()
    serve.launch(demo, server, port=port, block=False)
    url = f"http://127.0.0.1:{port}/"
    image, svg = list(server.models)
    yield {"server": server, "url": url, "client": Client(url, verbose=False), "image": image, "svg": svg}
    demo.close()
    server.close()


def generate(client, model, prompt="a red circle", samples=2, guidance=3.0, temperature=1.0, top_k=0, top_p=1.0,
             seed=0):
    return client.predict(model, prompt, samples, guidance, temperature, top_k, top_p, seed, api_name="/generate")


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


# -- the batcher ----------------------------------------------------------------------------------
def test_batcher_serves_concurrent_requests_in_one_call_exactly_as_alone(tiny_exports):
    gen = Generator.from_pretrained(tiny_exports["svg"])
    batcher = Batcher(gen, max_batch=8, max_queue=8, wait=0.0, preview_every=4)
    try:
        requests = [Request(p, n, seed, temperature=1.0, preview=i == 0)
                    for i, (p, n, seed) in enumerate([("home", 2, 1), ("heart", 3, 2), ("bell", 1, 3)])]
        with batcher._cond:  # the worker waits until all three are queued, however loaded the machine
            for r in requests:
                batcher.submit(r)
        results = []
        for r in requests:
            updates = [r.updates.get(timeout=120)]
            while updates[-1][0] == "tokens":
                updates.append(r.updates.get(timeout=120))
            assert updates[-1][0] == "done", updates[-1]
            results.append(updates)
        assert list(batcher.batches) == [3]  # one generate call for the three
        assert batcher.batches.maxlen is not None  # a long-running server keeps only the recent sizes
        for r, updates in zip(requests, results):
            alone = gen.generate([r.prompt], num_samples=r.num_samples, seed=r.seed, temperature=1.0)[0]
            assert updates[-1][1] == alone
        previews = [u[1] for u in results[0] if u[0] == "tokens"]
        assert previews and all(t.shape[0] == 2 and t.shape[1] % 4 == 0 for t in previews)
        assert len(results[1]) == 1  # no previews asked, none sent
    finally:
        batcher.close()


def test_batcher_refuses_beyond_its_queue_and_keeps_serving(tiny_exports):
    gen = Generator.from_pretrained(tiny_exports["svg"])
    batcher = Batcher(gen, max_batch=1, max_queue=2, wait=0.0)
    try:
        with batcher._cond:  # hold the worker off: the queue is full until we let go
            kept = [batcher.submit(Request("home", 1, s)) for s in range(2)]
            with pytest.raises(Busy, match="busy, try again in a moment"):
                batcher.submit(Request("home", 1, 9))
        assert all(r.updates.get(timeout=120)[0] == "done" for r in kept)
        assert batcher.submit(Request("home", 1, 9)).updates.get(timeout=120)[0] == "done"
    finally:
        batcher.close()


def test_generator_seed_per_prompt_and_step_hook(tiny_exports):
    gen = Generator.from_pretrained(tiny_exports["image"])
    steps = []
    both = gen.generate(["a red circle", "home"], num_samples=2, seed=[5, 6],
                        on_step=lambda first, t: steps.append((first, tuple(t.shape))))
    assert both[0] == gen.generate(["a red circle"], num_samples=2, seed=5)[0]
    assert both[1] == gen.generate(["home"], num_samples=2, seed=6)[0]
    L = gen.target.max_len
    assert steps == [(0, (4, t)) for t in range(1, L + 1)]
    with pytest.raises(ValueError, match="one per prompt"):
        gen.generate(["a", "b"], seed=[1])


def test_complete_fill_redraws_one_path_and_keeps_the_others(tiny_exports):
    gen = Generator.from_pretrained(tiny_exports["svg"])
    tok = gen.target
    paths = tok.encode_paths(SQUARES)
    out = gen.complete("home", SQUARES, num_samples=2, fill=1, seed=0)
    for svg in out:
        got = tok.encode_paths(svg) if svg.count("<path") else []
        # paths 0 and 2 stay where they were; whatever the model drew sits between them
        assert got[0] == paths[0] and got[-1] == paths[2], tok.token_names(tok.encode(svg))
    with pytest.raises(IndexError, match="out of range"):
        gen.complete("home", SQUARES, fill=3)


# -- the API --------------------------------------------------------------------------------------
def test_image_model_grid_png_files_and_seed(running):
    client, model = running["client"], running["image"]
    grid, svgs, files, status = generate(client, model, samples=3, seed=11)
    assert svgs == "" and len(files) == 3 and all(f.endswith(".png") for f in files)
    a = pixels(grid)
    assert a.shape[0] >= 128 and a.std() > 1.0  # a real picture, not a blank
    assert "seed 11" in status and "3 samples" in status
    again = generate(client, model, samples=3, seed=11)
    assert np.array_equal(pixels(again[2][0]), pixels(files[0]))  # the seed fixes the samples
    other = generate(client, model, samples=3, seed=12)
    assert not np.array_equal(pixels(other[2][0]), pixels(files[0]))


def test_svg_model_inline_svgs_downloadable(running):
    client, model = running["client"], running["svg"]
    grid, svgs, files, status = generate(client, model, prompt="home", samples=2, seed=3)
    assert grid is None and svgs.count("<img") == 2 and svgs.count('download="sample-') == 2
    assert len(files) == 2 and all(f.endswith(".svg") for f in files)
    gen = running["server"].models[model].gen
    expected = gen.generate(["home"], num_samples=2, seed=3, **serve.sampling_args(gen, 3.0, 1.0, 0, 1.0,
                                                                                     serve.Limits()))[0]
    assert [open(f).read() for f in files] == expected  # the page serves what the API gives


def test_concurrent_requests_are_batched_and_none_lost(running):
    client, model, server = running["client"], running["image"], running["server"]
    batcher = server.models[model].batcher
    before = len(batcher.batches)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda s: generate(Client(running["url"], verbose=False), model, samples=2, seed=s),
                                range(6)))
    assert all(len(r[2]) == 2 for r in results)
    sizes = list(batcher.batches)[before:]
    assert sum(sizes) == 6 and max(sizes) > 1, sizes
    alone = generate(client, model, samples=2, seed=4)
    assert np.array_equal(pixels(alone[2][1]), pixels(results[4][2][1]))  # batched == alone


def test_complete_continue_and_fill(running):
    client, model = running["client"], running["svg"]
    svgs, files, status = client.predict(model, "home", SQUARES, "continue", 1, 1, 3.0, 1.0, 0, 1.0, 0,
                                         api_name="/complete")
    assert len(files) == 1 and "3 paths continued" in status
    svgs, files, status = client.predict(model, "home", SQUARES, "fill", 2, 2, 3.0, 1.0, 0, 1.0, 0,
                                         api_name="/complete")
    assert len(files) == 2 and "path 2 of 3 redrawn" in status


@pytest.mark.parametrize("prompt, samples, guidance, temperature, top_k, top_p, seed, message", [
    ("", 2, 3.0, 1.0, 0, 1.0, 0, "the prompt is empty"),
    ("   ", 2, 3.0, 1.0, 0, 1.0, 0, "the prompt is empty"),
    ("x" * 10_000, 2, 3.0, 1.0, 0, 1.0, 0, "the prompt has 10,000 characters; this server takes at most 200"),
    ("a red circle", -3, 3.0, 1.0, 0, 1.0, 0, "samples must be between 1 and 4, got -3"),
    ("a red circle", 10**9, 3.0, 1.0, 0, 1.0, 0, "samples must be between 1 and 4, got 1e+09"),
    ("a red circle", 2.5, 3.0, 1.0, 0, 1.0, 0, "samples must be a whole number"),
    ("a red circle", 2, -1.0, 1.0, 0, 1.0, 0, "guidance must be between 0 and 20, got -1"),
    ("a red circle", 2, 1e300, 1.0, 0, 1.0, 0, "guidance must be between 0 and 20"),
    ("a red circle", 2, "lots", 1.0, 0, 1.0, 0, "guidance must be a number, got 'lots'"),
    ("a red circle", 2, 3.0, -0.5, 0, 1.0, 0, "temperature must be between 0 and 5"),
    ("a red circle", 2, 3.0, 1.0, -1, 1.0, 0, "top-k must be between 0 and"),
    ("a red circle", 2, 3.0, 1.0, 0, 0.0, 0, "top-p must be above 0"),
    ("a red circle", 2, 3.0, 1.0, 0, 1.5, 0, "top-p must be between 0 and 1"),
    ("a red circle", 2, 3.0, 1.0, 0, 1.0, -7, "seed must be between -1 and"),
    ("a red circle", 2, 3.0, 1.0, 0, 1.0, 2**40, "seed must be between -1 and"),
    ("a red circle", None, 3.0, 1.0, 0, 1.0, 0, "samples is missing"),
])
def test_bad_requests_get_a_clear_message(running, prompt, samples, guidance, temperature, top_k, top_p, seed,
                                          message):
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace("+", r"\+")):
        generate(running["client"], running["image"], prompt, samples, guidance, temperature, top_k, top_p, seed)


def raw_call(url: str, endpoint: str, body: str) -> tuple[str, str]:
    """POST a hand-written JSON body (the client refuses NaN) to Gradio's HTTP API; (event, data)."""
    with httpx.Client(timeout=120) as http:
        r = http.post(f"{url}gradio_api/call/{endpoint}", content=body, headers={"Content-Type": "application/json"})
        if r.status_code != 200:
            return "http", f"{r.status_code} {r.text}"
        event_id = r.json()["event_id"]
        text = http.get(f"{url}gradio_api/call/{endpoint}/{event_id}").text
    events = [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]
    data = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]
    return events[-1], data[-1]


@pytest.mark.parametrize("field, value, message", [
    (3, "NaN", "guidance must be a finite number, got nan"),
    (4, "Infinity", "temperature must be a finite number, got inf"),
    (2, "-Infinity", "samples must be a finite number"),
    (7, "NaN", "seed must be a finite number"),
])
def test_nan_and_infinity_through_raw_http(running, field, value, message):
    data = [json.dumps(running["image"]), '"a red circle"', "2", "3.0", "1.0", "0", "1.0", "0"]
    data[field] = value
    event, payload = raw_call(running["url"], "generate", '{"data": [' + ", ".join(data) + "]}")
    assert event == "error" and message in payload, (event, payload)


def test_html_emoji_and_right_to_left_are_text(running):
    prompt = '<script>alert("x")</script><img src=x onerror=alert(1)> 🙂🚀 دائرة حمراء עיגול אדום'
    grid, _, files, status = generate(running["client"], running["image"], prompt=prompt[:200])
    assert len(files) == 2 and pixels(grid).std() > 1.0
    assert "<script" not in status and "<img" not in status and "&lt;script&gt;" in status  # escaped, inert
    assert "🙂" in status and "עיגול" in status and "read as unknown" in status


def test_unknown_model_and_wrong_kind(running):
    with pytest.raises(Exception, match="nope is not in the list of choices: .'image-run"):
        generate(running["client"], "nope")
    with pytest.raises(Exception, match="draws images; SVG completion needs an SVG model"):
        running["client"].predict(running["image"], "home", SQUARES, "continue", 1, 1, 3.0, 1.0, 0, 1.0, 0,
                                  api_name="/complete")


@pytest.mark.parametrize("name", sorted(HOSTILE_SVGS))
def test_hostile_svgs_are_refused_with_the_parser_message(running, name):
    with pytest.raises(Exception, match="this SVG was refused: "):
        running["client"].predict(running["svg"], "home", HOSTILE_SVGS[name], "continue", 1, 1, 3.0, 1.0, 0, 1.0,
                                  0, api_name="/complete")


@pytest.mark.parametrize("svg, mode, path, message", [
    ("", "continue", 1, "paste an SVG or upload a .svg file first"),
    ("<svg>" + " " * 300_000 + "</svg>", "continue", 1, "larger than 200,000 bytes"),
    (SQUARES, "fill", 4, "path number must be between 1 and 3, got 4"),
    (SQUARES, "fill", 1e9, "path number must be between 1 and 3"),
    (SQUARES, "sideways", 1, "'sideways' .* is not in the list of choices: .'continue', 'fill'"),
])
def test_bad_completions(running, svg, mode, path, message):
    with pytest.raises(Exception, match=message):
        running["client"].predict(running["svg"], "home", svg, mode, path, 1, 3.0, 1.0, 0, 1.0, 0,
                                  api_name="/complete")


def test_upload_refuses_binary_and_oversized_files(running, tmp_path):
    server = running["server"]
    (tmp_path / "bin.svg").write_bytes(b"\xff\xfe\x00<svg")
    (tmp_path / "big.svg").write_bytes(b"<svg>" + b" " * 300_000 + b"</svg>")
    with pytest.raises(serve.gr.Error, match="not UTF-8 text"):
        server.load_upload(running["svg"], str(tmp_path / "bin.svg"))
    with pytest.raises(serve.gr.Error, match="this server takes SVGs up to 200,000"):
        server.load_upload(running["svg"], str(tmp_path / "big.svg"))
    text, shown = server.load_upload(running["svg"], _write(tmp_path / "ok.svg", SQUARES))
    assert text == SQUARES and "3 paths" in shown


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_busy_when_the_queue_is_full_and_served_after(tiny_exports):
    server = serve.Server(serve.load_models([str(tiny_exports["svg"])]), serve.Limits())
    m = next(iter(server.models.values()))
    m.batcher.close()
    m.batcher = Batcher(m.gen, max_batch=1, max_queue=1, wait=0.0)
    try:
        with m.batcher._cond:  # hold the worker off while one request fills the queue
            first = m.batcher.submit(Request("home", 1, 0))
            with pytest.raises(serve.gr.Error, match="busy, try again in a moment"):
                list(server.generate(m.label, "home", 1, 3.0, 1.0, 0, 1.0, 1))
        assert first.updates.get(timeout=120)[0] == "done"
        *_, last = server.generate(m.label, "home", 1, 3.0, 1.0, 0, 1.0, 1)
        assert "1 samples" in last[3]
    finally:
        server.close()


def test_card_and_examples_come_from_the_run_folder(running):
    m = running["server"].models[running["image"]]
    card = m.card()
    assert "123 steps of batch 8" in card and "accuracy 0.25" in card and "data/tiny/train-\\*.tar" in card
    assert m.examples() == ["a red circle", "a blue square", "a green star above a yellow triangle"]


def test_page_is_offline_and_binds_locally(running):
    page = httpx.get(running["url"], timeout=30).text
    assert "fonts.googleapis" not in page and "cdn." not in page
    assert serve.parse_args(["x"]).host == "127.0.0.1"
    assert serve.os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    config = httpx.get(running["url"] + "config", timeout=30).json()
    assert config.get("analytics_enabled") is False
    assert "googleapis" not in json.dumps(config.get("theme_css", "") + json.dumps(config.get("stylesheets", [])))



@pytest.mark.slow  # a server process of its own: ~20-60 s to start on a loaded 2-core box
def test_serve_benchmark_runs_at_toy_size(tiny_exports, capsys):
    """benchmarks/serve.py end to end (its own server process) with 3 clients: the JSON line is complete,
    nothing is lost and batching changed no one's samples. Speed is not checked here (BENCHMARKS.md)."""
    out = load_benchmark("serve").main([str(tiny_exports["image"]), "--clients", "3", "--samples", "2", "--rounds", "1",
                                        "--json"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["throughput_ratio"] == out["throughput_ratio"] > 0 and last["p95_s"] > 0
    assert last["lost"] == 0 and last["mismatched"] == 0


def test_previews_then_the_result_and_none_when_switched_off(tiny_exports):
    server = serve.Server(serve.load_models([str(tiny_exports["image"])]), serve.Limits(preview_s=0.0))
    m = next(iter(server.models.values()))
    try:
        updates = list(server.generate(m.label, "a red circle", 2, 3.0, 1.0, 0, 1.0, 0))
        assert len(updates) == 1 and "2 samples" in updates[0][3]  # the result only
        server.limits.preview_s = 1e-9  # every preview the batcher sends
        m.batcher.preview_every = 1
        updates = list(server.generate(m.label, "a red circle", 2, 3.0, 1.0, 0, 1.0, 0))
        previews, final = updates[:-1], updates[-1]
        assert previews and all("decoding" in u[3] and u[0].size == final[0].size for u in previews)
        assert np.asarray(previews[0][0]).std() > 0 and "2 samples" in final[3]
    finally:
        server.close()
