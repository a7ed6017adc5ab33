"""tlab serve: every endpoint, every bad request, a concurrent load, and the page in headless Chromium."""

import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from transferlab.config import TrainConfig
from transferlab.serve import create_app
from transferlab.train.runner import train

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def run(woof_mini, tmp_path_factory):
    out = tmp_path_factory.mktemp("serve") / "run"
    return train(TrainConfig(data=str(woof_mini), out=str(out), strategy="frozen", epochs=3, image_size=128))


@pytest.fixture(scope="module")
def client(run):
    return TestClient(create_app(run.path, max_bytes=2_000_000, max_files=4))


def _photo(woof_mini, breed="n02111889-Samoyed") -> tuple[str, bytes]:
    path = sorted((woof_mini / "val" / breed).iterdir())[1]  # [0] is a photo the model gets wrong
    return path.name, path.read_bytes()


def test_health_classes_and_page(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["classes"] == 10 and health["runtime"] in ("openvino", "onnxruntime", "torch")
    classes = client.get("/classes").json()
    assert classes[8] == {"index": 8, "class": "n02111889-Samoyed", "label": "Samoyed"}
    page = client.get("/")
    assert page.status_code == 200 and "Drop a photo" in page.text and "http" not in page.text.split("<script>")[0].split("<style>")[0][200:]
    assert client.get("/report").status_code == 404


def test_predict_returns_the_cli_json_shape(client, woof_mini):
    files = [("files", _photo(woof_mini)), ("files", _photo(woof_mini, "n02088364-beagle"))]
    answer = client.post("/predict?top_k=3", files=files)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [len(item["predictions"]) for item in body] == [3, 3]
    assert set(body[0]) == {"path", "predictions"} and set(body[0]["predictions"][0]) == {"label", "class", "probability"}
    assert body[0]["predictions"][0]["label"] == "Samoyed"


@pytest.mark.parametrize(
    "files, status, fragment",
    [
        ([("files", ("notes.jpg", b"just text"))], 415, "not an image"),
        ([("files", ("empty.jpg", b""))], 422, "empty file"),
        ([("files", ("big.png", b"\x89PNG" + b"0" * 2_100_000))], 413, "over the limit"),
        ([("files", ("a.jpg", b"x"))] * 5, 413, "5 files"),
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


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)")
def test_the_page_labels_an_uploaded_photo_in_chromium(run, woof_mini, tmp_path):
    import uvicorn

    playwright = pytest.importorskip("playwright.sync_api")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(run.path), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    photo = sorted((woof_mini / "val" / "n02111889-Samoyed").iterdir())[1]
    errors: list[str] = []
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#file", str(photo))
            page.wait_for_selector("#bars .row", timeout=30_000)
            top = page.inner_text("#bars .row .label")
            page.screenshot(path=str(tmp_path / "serve.png"))
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert top.startswith("Samoyed") and errors == []


def test_report_is_served_when_the_run_has_one(run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    (copy / "report.html").write_text("<html><body>the report</body></html>")
    answer = TestClient(create_app(copy)).get("/report")
    assert answer.status_code == 200 and "the report" in answer.text
