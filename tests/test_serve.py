"""tlab serve: every endpoint, every bad request, a concurrent load, and the page in headless Chromium."""

import io
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from conftest import wait_until
from transferlab.serve import TORCH_THREADS_SERVING, create_app

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def run(woof_frozen_run):
    """The suite's frozen woof-mini model (read only here: tests that add a report work on a copy)."""
    return woof_frozen_run


@pytest.fixture(scope="module")
def client(run):
    return TestClient(create_app(run.path, max_bytes=2_000_000, max_files=4))


def _photo(woof_mini, breed="n02111889-Samoyed") -> tuple[str, bytes]:
    path = sorted((woof_mini / "val" / breed).iterdir())[1]  # [0] is a photo the model gets wrong
    return path.name, path.read_bytes()


def test_health_classes_and_page(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["classes"] == 10 and health["runtime"] in ("openvino", "onnxruntime", "torch")
    assert health["data"] == "woof-mini" and health["nouns"] == "breeds"
    classes = client.get("/classes").json()
    assert classes[8] == {"index": 8, "class": "n02111889-Samoyed", "label": "Samoyed"}
    page = client.get("/")
    assert page.status_code == 200 and "Drop a photo" in page.text and "http" not in page.text.split("<script>")[0].split("<style>")[0][200:]
    assert client.get("/report").status_code == 404


def test_a_serving_process_leaves_the_cores_to_the_model_runtime(run, woof_mini):
    """`tlab serve`'s own process: PyTorch only preprocesses, on one thread, when another runtime runs the model;
    the answers are the same. An app inside another process (a notebook, these tests) leaves PyTorch as it was."""
    threads = torch.get_num_threads()
    try:
        shared = TestClient(create_app(run.path))
        assert torch.get_num_threads() == threads
        alone = TestClient(create_app(run.path, own_process=True))
        runtime = alone.get("/health").json()["runtime"]
        assert torch.get_num_threads() == (TORCH_THREADS_SERVING if runtime != "torch" else threads)
        files = [("files", _photo(woof_mini))]
        answers = [client.post("/predict", files=files).json()[0]["predictions"][0] for client in (shared, alone)]
        assert answers[0]["class"] == answers[1]["class"] and answers[0]["probability"] == pytest.approx(answers[1]["probability"], abs=1e-5)
    finally:
        torch.set_num_threads(threads)


def test_predict_returns_the_cli_json_shape(client, woof_mini):
    files = [("files", _photo(woof_mini)), ("files", _photo(woof_mini, "n02088364-beagle"))]
    answer = client.post("/predict?top_k=3", files=files)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [len(item["predictions"]) for item in body] == [3, 3]
    assert set(body[0]) == {"path", "label", "predictions"}
    assert set(body[0]["predictions"][0]) == {"label", "class", "probability", "raw_probability"}
    assert body[0]["label"] == body[0]["predictions"][0]["label"] == "Samoyed"


def test_the_server_sees_a_photo_as_predict_does(run, client, woof_mini, tmp_path, monkeypatch):
    """Uploads are decoded into uint8 tensors (`decode_uint8`), resized and normalised as `Predictor.predict` does
    files: the same probabilities for a small JPEG (torchvision's decoder), a large one (Pillow at reduced scale),
    a PNG, a greyscale JPEG and a JPEG whose EXIF says to rotate it."""
    import transferlab.serve as serve_module
    from transferlab.inference import load

    decoded: list[str] = []
    real = serve_module.decode_uint8
    monkeypatch.setattr(serve_module, "decode_uint8", lambda data, name, size: decoded.append(name) or real(data, name, size))
    photo = Image.open(sorted((woof_mini / "val" / "n02088364-beagle").iterdir())[2])
    small = photo.resize((photo.width * 200 // photo.height, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    files = {"large.jpg": (photo, {}), "small.jpg": (small, {}), "small.png": (small, {}), "grey.jpg": (small.convert("L"), {}),
             "turned.jpg": (small, {"exif": exif.tobytes()})}
    for name, (image, options) in files.items():
        image.save(tmp_path / name, **options)
    local = load(run.path, runtime="auto", precision="auto")
    for name in files:
        served = client.post("/predict", files=[("files", (name, (tmp_path / name).read_bytes()))]).json()[0]["predictions"]
        expected = local.predict(tmp_path / name)[0].predictions
        assert [p["class"] for p in served] == [p.class_name for p in expected], name
        assert [p["probability"] for p in served] == pytest.approx([p.probability for p in expected], abs=1e-6), name
    assert decoded == list(files)


def test_min_confidence_withholds_unsure_answers(client, woof_mini):
    files = [("files", _photo(woof_mini)), ("files", _photo(woof_mini, "n02088364-beagle"))]
    strict = client.post("/predict?min_confidence=1", files=files).json()
    assert all(item["label"] is None and item["not_sure"].startswith("not sure") and item["predictions"] for item in strict)
    assert all(item["label"] for item in client.post("/predict?min_confidence=0", files=files).json())


def test_explain_returns_a_png_and_refuses_what_it_cannot_explain(client, woof_mini):
    answer = client.post("/explain", files=[("files", _photo(woof_mini))])
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(answer.content)) as overlay:
        assert overlay.size == (128, 128)
    assert json.loads(answer.headers["x-predictions"])[0]["label"] == "Samoyed"
    other = client.post("/explain?class=beagle", files=[("files", _photo(woof_mini))])
    assert other.status_code == 200 and other.content != answer.content
    assert client.post("/explain", files=[("files", ("notes.txt", b"not a photo"))]).status_code == 415
    assert client.post("/explain?class=unicorn", files=[("files", _photo(woof_mini))]).status_code == 422


@pytest.mark.parametrize(
    "files, status, fragment",
    [
        ([("files", ("notes.jpg", b"just text"))], 415, "not an image"),
        ([("files", ("empty.jpg", b""))], 422, "empty file"),
        ([("files", ("big.png", b"\x89PNG" + b"0" * 2_100_000))], 413, "over the limit"),
        ([("files", ("a.jpg", b"x"))] * 5, 413, "more than 4 files"),
    ],
)
def test_bad_uploads_get_clear_4xx(client, files, status, fragment):
    answer = client.post("/predict", files=files)
    assert answer.status_code == status and fragment in answer.json()["detail"]


def test_gif_and_no_files(client):
    buffer = io.BytesIO()
    Image.new("P", (8, 8)).save(buffer, format="GIF")
    assert client.post("/predict", files=[("files", ("x.gif", buffer.getvalue()))]).status_code == 415
    assert client.post("/predict", data={"note": "hello"}).status_code == 422
    assert client.post("/predict").status_code == 422


def test_fifty_concurrent_requests_without_failures(client, woof_mini):
    photo = _photo(woof_mini)
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: client.post("/predict", files=[("files", photo)]).status_code, range(50)))
    assert codes == [200] * 50


@contextmanager
def serving(app, **config):
    """`app` under uvicorn in a thread, as `tlab serve` runs it (h11 with the header deadline); yields the port."""
    import uvicorn

    from transferlab.serve import header_deadline_protocol

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info", http=header_deadline_protocol(), **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


OVERLAPS = """() => {
  const shown = el => {
    const box = el.getBoundingClientRect(), style = getComputedStyle(el);
    return box.width > 1 && box.height > 1 && style.visibility !== "hidden" && el.checkVisibility({ contentVisibilityAuto: true, visibilityProperty: true });
  };
  const leaves = [...document.body.querySelectorAll("*")].filter(el => el.tagName !== "SCRIPT" && shown(el) && ![...el.children].some(shown));
  const found = [];
  for (let i = 0; i < leaves.length; i++) for (let j = i + 1; j < leaves.length; j++) {
    const a = leaves[i].getBoundingClientRect(), b = leaves[j].getBoundingClientRect();
    const w = Math.min(a.right, b.right) - Math.max(a.left, b.left), h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    if (w > 1 && h > 1) found.push(`${leaves[i].id || leaves[i].className || leaves[i].tagName} / ${leaves[j].id || leaves[j].className || leaves[j].tagName}`);
  }
  const wide = [...document.body.querySelectorAll("*")].filter(el => shown(el) && el.getBoundingClientRect().right > window.innerWidth + 1);
  return found.concat(wide.map(el => `${el.id || el.tagName} wider than the window`));
}"""


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)")
@pytest.mark.parametrize("width", [360, 1280])
def test_the_page_in_chromium_at_phone_and_desktop_widths(run, woof_mini, tmp_path, width):
    """No broken image before a photo; the photo beside its five calibrated answers; the heatmap toggle; the class
    list; nothing overlaps or runs off the screen; keyboard reaches the file chooser; no console error and no request
    leaves the server."""
    playwright = pytest.importorskip("playwright.sync_api")
    photo = sorted((woof_mini / "val" / "n02111889-Samoyed").iterdir())[1]
    errors: list[str] = []
    requests: list[str] = []
    with serving(create_app(run.path)) as port, playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))  # CSP violations land here
        page.on("request", lambda request: requests.append(request.url))
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("#model:has-text('breeds')")
        page.wait_for_selector("#class-list li", state="attached")
        before = {"result": page.is_visible("#result"), "preview": page.is_visible("#preview"), "overlaps": page.evaluate(OVERLAPS)}
        page.screenshot(path=str(tmp_path / f"empty-{width}.png"), full_page=True)
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.id")
        page.set_input_files("#file", str(photo))
        page.wait_for_selector("#bars li", timeout=30_000)
        answers = page.locator("#bars li .label").all_inner_texts()
        verdict, preview = page.inner_text("#verdict"), page.get_attribute("#preview", "src")
        page.check("#explain")
        wait_until(lambda: page.get_attribute("#preview", "src") != preview and page.evaluate("() => document.getElementById('preview').complete"))
        page.click("#classes summary")
        after = page.evaluate(OVERLAPS)
        page.screenshot(path=str(tmp_path / f"answered-{width}.png"), full_page=True)
        title, heading, line = page.title(), page.inner_text("h1"), page.inner_text("#model")
        browser.close()
    assert errors == []
    assert before == {"result": False, "preview": False, "overlaps": []}
    assert after == [], after
    assert focused == "file"
    assert len(answers) == 5 and answers[0].startswith("Samoyed") and verdict.startswith("It looks like: Samoyed")
    assert title == "transferlab: woof-mini" and heading == "Which breed is it?" and line.startswith("woof-mini · 10 breeds")
    server = f"http://127.0.0.1:{port}/"
    assert all(url.startswith((server, "blob:", "data:")) for url in requests), requests
    assert any(url.startswith(server + "explain") for url in requests)


def test_report_is_served_when_the_run_has_one(run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    (copy / "report.html").write_text("<html><body>the report</body></html>")
    answer = TestClient(create_app(copy)).get("/report")
    assert answer.status_code == 200 and "the report" in answer.text


def test_every_response_says_what_it_may_load_and_the_report_is_sandboxed(run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    (copy / "report.html").write_text("<html><body>the report</body></html>")
    client = TestClient(create_app(copy))
    page, report, health = client.get("/"), client.get("/report"), client.get("/health")
    for response in (page, report, health, client.get("/page.js")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"] and "<script>" not in page.text
    assert report.headers["content-security-policy"].startswith("sandbox") and "script-src" not in report.headers["content-security-policy"]
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404  # Swagger would load from a CDN
    api = client.get("/openapi.json")
    assert api.status_code == 200 and "/predict" in api.text
    for text in (health.text, api.text):
        assert str(tmp_path) not in text and "/tmp" not in text
    assert health.json()["model"] == "run"


def test_a_token_guards_everything_but_the_page_and_health(run, woof_mini):
    client = TestClient(create_app(run.path, token="s3cret"))
    photo = [("files", _photo(woof_mini))]
    assert client.get("/health").json()["token_required"] is True and client.get("/").status_code == 200
    for path in ("/classes", "/report", "/openapi.json"):
        assert client.get(path).status_code == 401
    refused = client.post("/predict", files=photo)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert client.post("/predict", files=photo, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/predict", files=photo, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    client.cookies.set("tlab_token", "s3cret")
    assert client.post("/predict", files=photo).status_code == 200


def _black_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


def _health_latencies(port: int, until: threading.Event) -> list[float]:
    import httpx

    latencies = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        while not until.is_set():
            started = time.perf_counter()
            assert client.get("/health").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
    return latencies


@pytest.mark.parametrize("photos, megapixels, status", [(16, 100.0, 413), (2, 200.0, 200)])
def test_huge_photos_never_stall_health(run, photos, megapixels, status):
    """16 black 9000 x 9000 PNGs (236 KB each): over the pixel budget, refused before decoding. Two of them under a
    larger budget: decoded in the worker pool while /health keeps answering within a second."""
    import httpx

    png = _black_png(9000)
    app = create_app(run.path, max_megapixels=megapixels)
    done = threading.Event()
    with serving(app) as port, ThreadPoolExecutor(1) as pool:
        health = pool.submit(_health_latencies, port, done)
        time.sleep(0.3)
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", files=[("files", (f"{i}.png", png)) for i in range(photos)], timeout=120)
        done.set()
        latencies = health.result()
    assert answer.status_code == status, answer.text
    if status == 413:
        assert "megapixels" in answer.json()["detail"]
    assert max(latencies) < 1.0, latencies


class CountingApp:
    """ASGI wrapper counting the request body bytes the app read."""

    def __init__(self, app):
        self.app, self.read = app, 0

    async def __call__(self, scope, receive, send):
        async def counted():
            message = await receive()
            self.read += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


def test_a_chunked_upload_is_refused_while_it_streams(run):
    """50 MB sent chunked (no Content-Length) as one file: refused with 413 before 11 MB of it is read."""
    counting = CountingApp(create_app(run.path))
    boundary = b"tlabboundary"
    head = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
    with serving(counting) as port, socket.create_connection(("127.0.0.1", port)) as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                           b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n\r\n")
        chunk = b"\x89PNG" + b"0" * (256 * 1024 - 4)
        body = [head] + [chunk] * 200
        try:
            for piece in body:
                connection.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        except (BrokenPipeError, ConnectionResetError):
            pass
        connection.settimeout(10)
        try:
            response = connection.recv(4096)
        except ConnectionResetError:
            response = b""
    assert b" 413 " in response.split(b"\r\n")[0], response[:200]
    assert b"over the limit" in response
    assert counting.read < 11 * 1024 * 1024, counting.read


def test_stalled_connections_are_closed_and_disconnects_are_one_line(run, monkeypatch, caplog):
    from transferlab import serve

    monkeypatch.setattr(serve, "HEADER_SECONDS", 0.5)
    monkeypatch.setattr(serve, "BODY_IDLE_SECONDS", 0.5)
    caplog.set_level(logging.INFO)
    with serving(create_app(run.path)) as port:
        stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        for i, connection in enumerate(stalled):
            if i % 2:
                connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # half the headers, then nothing
        time.sleep(1.5)
        for connection in stalled:
            connection.settimeout(2)
            assert connection.recv(1024) == b"", "a stalled connection is still open"
            connection.close()

        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n")
        slow.settimeout(5)
        assert b" 408 " in slow.recv(4096).split(b"\r\n")[0]
        slow.close()

        gone = socket.create_connection(("127.0.0.1", port))
        gone.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n")
        gone.close()
        time.sleep(0.5)
        import httpx

        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    assert "went away during POST /predict" in caplog.text
    assert "Traceback" not in caplog.text and "Exception in ASGI application" not in caplog.text


def test_binding_beyond_this_machine_warns_and_the_token_comes_from_the_environment(run, monkeypatch):
    from typer.testing import CliRunner

    from transferlab import serve
    from transferlab.cli import app

    calls = []
    monkeypatch.setattr(serve, "serve", lambda *args: calls.append(args))
    runner = CliRunner()
    local = runner.invoke(app, ["serve", str(run.path)])
    assert local.exit_code == 0 and "warning" not in local.output
    exposed = runner.invoke(app, ["serve", str(run.path), "--host", "0.0.0.0"])
    assert exposed.exit_code == 0 and "listening on 0.0.0.0" in exposed.output and "--token" in exposed.output
    monkeypatch.setenv("TLAB_SERVE_TOKEN", "from-env")
    guarded = runner.invoke(app, ["serve", str(run.path), "--host", "::"])
    assert "listening on ::" in guarded.output and "--token" not in guarded.output
    assert [call[6] for call in calls] == [None, None, "from-env"] and {call[7] for call in calls} == {"auto"}
    assert serve.is_loopback("::1") and serve.is_loopback("localhost") and not serve.is_loopback("192.168.1.5")


def test_files_each_under_the_limit_pass_however_many(run):
    """The per-file count restarts with every part (six 600 KB files under a 1 MB per-file limit)."""
    client = TestClient(create_app(run.path, max_bytes=1_000_000, max_files=8))
    files = [("files", (f"f{i}.png", b"\x89PNG" + bytes([i]) * 600_000)) for i in range(6)]
    answer = client.post("/predict", files=files)
    assert answer.status_code != 413, answer.text  # refused for what they are (not images), not for their size


def test_a_token_with_any_characters_works_through_the_pages_cookie(run, woof_mini):
    from urllib.parse import quote

    token = "ab+cd/=&é ok"
    client = TestClient(create_app(run.path, token=token))
    client.cookies.set("tlab_token", quote(token, safe=""))  # as the page's encodeURIComponent stores it
    assert client.post("/predict", files=[("files", _photo(woof_mini))]).status_code == 200


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(run, woof_mini):
    """16 different photos sent at once: every answer equals the photo's answer when it was sent alone, and the
    model thread ran them in batches of more than one."""
    app = create_app(run.path)
    photos = [(p.name, p.read_bytes()) for p in sorted((woof_mini / "val").rglob("*.JPEG"))[::7][:16]]
    with TestClient(app) as alone:
        single = [alone.post("/predict", files=[("files", photo)]).json() for photo in photos]
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda photo: alone.post("/predict", files=[("files", photo)]).json(), photos * 3))
        health = alone.get("/health").json()
    assert len({answer[0]["predictions"][0]["class"] for answer in single}) > 3  # different photos, different answers
    for i, answer in enumerate(together):
        expected = single[i % len(photos)][0]
        assert answer[0]["path"] == expected["path"]
        assert [p["class"] for p in answer[0]["predictions"]] == [p["class"] for p in expected["predictions"]]
        assert answer[0]["predictions"][0]["probability"] == pytest.approx(expected["predictions"][0]["probability"], abs=1e-3)
    assert health["mean_batch"] > 1


def test_a_full_queue_answers_503_with_retry_after_at_once(run, woof_mini, monkeypatch):
    """While the model is stuck, photos beyond the queue's bound are refused at once (503, Retry-After), not held."""
    import transferlab.serve as serve_module

    monkeypatch.setattr(serve_module, "MAX_WAITING", 2)
    release = threading.Event()
    app = create_app(run.path)
    photo = _photo(woof_mini)
    with TestClient(app) as client:
        original = app.app.state.batcher.run
        app.app.state.batcher.run = lambda batch: (release.wait(30), original(batch))[1]
        with ThreadPoolExecutor(4) as pool:
            stuck = [pool.submit(client.post, "/predict", files=[("files", photo)])]
            time.sleep(0.5)  # the model thread holds the first request
            stuck += [pool.submit(client.post, "/predict", files=[("files", photo)]) for _ in range(2)]
            time.sleep(0.5)  # two photos waiting: the queue is full
            started = time.perf_counter()
            refused = client.post("/predict", files=[("files", photo)])
            refused_after = time.perf_counter() - started
            release.set()
            codes = [future.result(timeout=60).status_code for future in stuck]
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "waiting" in refused.json()["detail"] and refused_after < 5
    assert codes == [200, 200, 200]


def test_a_port_in_use_is_one_line_before_the_model_loads(run, monkeypatch):
    """uvicorn found it only after the model had loaded (seconds), and exited 3 with its own log lines."""
    from typer.testing import CliRunner

    from transferlab import serve
    from transferlab.cli import app

    monkeypatch.setattr(serve, "create_app", lambda *args, **kwargs: pytest.fail("the model was loaded"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", str(run.path), "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"--host 127.0.0.1 --port {port}: cannot listen there (in use" in result.output and "Traceback" not in result.output
    serve.check_can_listen("127.0.0.1", port)  # free again: no error
