"""`tlab serve`: a trained model as a local web service and a page to try it (FastAPI, run by uvicorn).

The model is loaded once. The event loop only moves bytes: uploads are read with limits enforced while they
stream in (per file, per request, files per request, a deadline for slow senders), then checked against a pixel
budget, decoded and preprocessed in a worker thread, and classified in the model thread, which batches the photos
of concurrent requests (`batching.MicroBatcher`; a full queue answers 503 with Retry-After), so `/health` keeps
answering. Uploads are decoded in memory: no path from a request ever reaches the filesystem. Every response says
what it may load (CSP), and the report is served sandboxed: it holds class names from the user's files.
"""

import asyncio
import errno
import hmac
import io
import ipaddress
import json
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote, unquote

import numpy as np
import torch
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from PIL import Image
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .batching import MicroBatcher, QueueFull
from .data.names import class_noun, plural
from .data.resolve import data_title
from .data.decode import ImageTooLargeError, NotAnImageError, UnreadableImageError, decode_uint8, open_checked
from .explain.gradcam import ExplainError
from .inference import Predictor, load
from .rundir import RunDir

log = logging.getLogger(__name__)

MAX_BYTES = 10 * 1024 * 1024
MAX_FILES = 16
MAX_MEGAPIXELS = 100.0
"""Pixels one request may make the server decode, JPEGs counted at the reduced scale they are decoded at: 16
phone photos pass, 16 lossless 9000 x 9000 PNGs (1,300 megapixels, 4 GB decoded) do not."""
MAX_BATCH = 32
"""Photos the model thread runs at once, from as many requests as have arrived."""
MAX_WAITING = 256
"""Photos (preprocessed: 0.6 MB each at 224 px) that may wait for the model; more get 503."""
BATCH_WAIT_S = 0.004
"""How long the model thread waits for requests still being decoded to fill a batch (none when nothing is)."""
TORCH_THREADS_SERVING = 1
"""PyTorch's threads in `tlab serve` when another runtime runs the model: PyTorch then only preprocesses (and
explains), and its parallel regions, synchronising two threads while OpenVINO's threads hold the cores, cost more
than they saved: 12 % more requests/s at concurrency 8 with one thread (two alternated pairs, bench/serve.py's
load, 2-core Xeon)."""
RETRY_AFTER_S = 1
TOKEN_ENV = "TLAB_SERVE_TOKEN"
TOKEN_COOKIE = "tlab_token"
HEADER_SECONDS = 10.0
"""A connection must send a request's headers within this time (after it opens, or after the previous response)."""
BODY_IDLE_SECONDS = 10.0
"""Longest pause while a request body streams in."""
BODY_SECONDS = 60.0
"""Longest time to receive a whole request body."""
PAGE_FILES = Path(__file__).parent / "report" / "templates"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
REPORT_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
API_CSP = "default-src 'none'; frame-ancestors 'none'"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class RequestGuard:
    """ASGI middleware: bodies over `max_body_bytes` (declared or streamed, chunked included) get 413, slow bodies
    408 (raised from the body reads, so the app answers them); a client that goes away is one log line; every
    response gets nosniff, no-referrer and a CSP."""

    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"").strip()
        if declared and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await _plain(send, 413, f"request body over the limit of {self.max_body_bytes:,} bytes")
            return
        started = asyncio.get_running_loop().time()
        received = 0
        body_done = False

        async def limited_receive() -> Message:
            """The body's messages, within the size and time limits; after the body, a plain receive (a response
            waiting for the client to disconnect must not time out)."""
            nonlocal received, body_done
            if body_done:
                return await receive()
            left = BODY_SECONDS - (asyncio.get_running_loop().time() - started)
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, min(BODY_IDLE_SECONDS, left)))
            except asyncio.TimeoutError:
                raise HTTPException(408, "the request body came too slowly") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(413, f"request body over the limit of {self.max_body_bytes:,} bytes")
                body_done = not message.get("more_body", False)
            return message

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_security_headers(scope["path"])]
            await send(message)

        try:
            await self.app(scope, limited_receive, secured_send)
        except ClientDisconnect:
            client = scope.get("client") or ("client", 0)
            log.info("%s:%s went away during %s %s", client[0], client[1], scope["method"], scope["path"])


def _security_headers(path: str) -> list[tuple[bytes, bytes]]:
    policy = PAGE_CSP if path in ("/", "/page.js", "/page.css") else REPORT_CSP if path == "/report" else API_CSP
    return [
        (b"content-security-policy", policy.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]


async def _plain(send: Send, status: int, detail: str) -> None:
    """A JSON error sent before the app answered (the connection is closed after it: the body was not read)."""
    body = JSONResponse({"detail": detail}).body
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"), *_security_headers("")],
    })
    await send({"type": "http.response.body", "body": body})


class _UploadParser(MultiPartParser):
    """Starlette's multipart parser, refusing a file part as soon as it passes `max_file_bytes`."""

    def __init__(self, *args: Any, max_file_bytes: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_file_bytes = max_file_bytes
        self._part_bytes = 0

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._part_bytes = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._current_part
        if part.file is not None:
            self._part_bytes += end - start
            if self._part_bytes > self.max_file_bytes:
                raise MultiPartException(f"{part.file.filename or 'upload'}: over the limit of {self.max_file_bytes:,} bytes per file")
        super().on_part_data(data, start, end)


async def read_uploads(request: Request, max_bytes: int, max_files: int) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every file in a multipart request, refused while it streams in when one file passes
    `max_bytes` or there are more than `max_files`."""
    if "multipart/form-data" not in request.headers.get("content-type", ""):
        raise HTTPException(422, "no image in the request: send multipart/form-data with one or more files")
    parser = _UploadParser(request.headers, request.stream(), max_files=max_files, max_fields=16, max_part_size=64 * 1024, max_file_bytes=max_bytes)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        message = str(error)
        if message.startswith("Too many files"):
            raise HTTPException(413, f"more than {max_files} file{'' if max_files == 1 else 's'} in one request") from None
        raise HTTPException(413 if "over the limit" in message or "exceeded" in message else 422, message) from None
    try:
        uploads = [value for _, value in form.multi_items() if hasattr(value, "read")]
        return [(upload.filename or "upload", await upload.read()) for upload in uploads]
    finally:
        await form.close()


def decode_uploads(
    uploads: list[tuple[str, bytes]], decode_size: int, max_megapixels: float, decode: Callable[[bytes, str, int], Any] = decode_uint8,
) -> list[tuple[str, Any]]:
    """The uploads decoded by `decode` (bytes, name, `decode_size` -> an RGB uint8 tensor, or the model's input),
    or a 4xx naming what is wrong: first every header against the pixel budget (JPEGs at the scale they decode at),
    then the photos. Runs in a worker thread; only one decoded photo is held at a time."""
    pixels = 0
    for name, data in uploads:
        with _http_errors():
            with open_checked(data, name, decode_size) as image:
                pixels += image.size[0] * image.size[1]
    if pixels > max_megapixels * 1e6:
        raise HTTPException(413, f"the photos hold {pixels / 1e6:,.0f} megapixels to decode; the limit per request is {max_megapixels:,.0f}")
    images = []
    for name, data in uploads:
        with _http_errors():
            images.append((name, decode(data, name, decode_size)))
    return images


def overlay_png(pixels: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 image as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@contextmanager
def _http_errors() -> Iterator[None]:
    """Decode errors as 415 (not an image), 413 (too large) or 422 (broken)."""
    try:
        yield
    except NotAnImageError as error:
        raise HTTPException(415, str(error)) from None
    except ImageTooLargeError as error:
        raise HTTPException(413, str(error)) from None
    except UnreadableImageError as error:
        raise HTTPException(422, str(error)) from None


def create_app(
    source: str | Path,
    strategy: str | None = None,
    max_bytes: int = MAX_BYTES,
    max_files: int = MAX_FILES,
    max_megapixels: float = MAX_MEGAPIXELS,
    token: str | None = None,
    precision: str = "auto",
    min_confidence: float = 0.0,
    tta: bool = False,
    own_process: bool = False,
) -> ASGIApp:
    """The app for the model of `source` (run directory, checkpoint or exported .onnx). With `token`, every endpoint
    but the page and /health needs it: `Authorization: Bearer <token>`, or the cookie the page sets. Below
    `min_confidence` (calibrated top probability) an answer is withheld as not sure; `?min_confidence=` overrides it.
    `own_process`: the process serves this app alone, so PyTorch may be set to one thread (`TORCH_THREADS_SERVING`)."""
    predictor: Predictor = load(source, strategy, runtime="auto", precision=precision, tta=tta)
    if own_process and predictor.backend != "torch":
        torch.set_num_threads(TORCH_THREADS_SERVING)
    run = RunDir(source) if Path(source).is_dir() else None
    model_name = Path(source).name
    data_name = data_title(run.read_config()["config"]["data"]) if run is not None and run.config_file.is_file() else None
    noun = class_noun(predictor.classes)
    nouns = plural(noun)
    decoder = ThreadPoolExecutor(1, thread_name_prefix="tlab-decode")  # one photo set decoding at a time
    batcher: MicroBatcher[tuple[np.ndarray, np.ndarray]] = MicroBatcher(predictor.answers, MAX_BATCH, BATCH_WAIT_S, MAX_WAITING)
    explainer = ThreadPoolExecutor(1, thread_name_prefix="tlab-explain")  # gradients in PyTorch, one request at a time

    def model_input(data: bytes, name: str, decode_size: int) -> torch.Tensor:
        return predictor.preprocess(decode_uint8(data, name, decode_size))

    def authorized(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else unquote(request.cookies.get(TOKEN_COOKIE, ""))
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "this server needs a token: Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(
        title="transferlab", description=f"Image classifier {model_name}", docs_url=None, redoc_url=None, openapi_url=None,
    )
    app.state.batcher = batcher
    guarded = [Depends(authorized)]

    @app.get("/health")
    def health() -> dict:
        return {
            "status": "ok", "model": model_name, "strategy": predictor.strategy, "runtime": predictor.backend,
            "precision": predictor.precision, "waiting": batcher.waiting,
            "mean_batch": round(float(np.mean(batcher.batches)), 2) if batcher.batches else None,
            "classes": len(predictor.classes), "image_size": predictor.config.image_size, "token_required": token is not None,
            "data": data_name, "noun": noun, "nouns": nouns, "temperature": predictor.temperature, "min_confidence": min_confidence,
            "tta": list(predictor.tta), "explain": predictor.model is not None,
        }

    @app.get("/classes", dependencies=guarded)
    def classes() -> list[dict]:
        return [{"index": i, "class": c, "label": n} for i, (c, n) in enumerate(zip(predictor.classes, predictor.names))]

    @app.post("/predict", dependencies=guarded)
    async def predict(
        request: Request, top_k: int = Query(5, ge=1, le=1000),
        min_confidence: float = Query(min_confidence, ge=0, le=1, description="Withhold answers below this top probability."),
    ) -> JSONResponse:
        uploads = await read_uploads(request, max_bytes, max_files)
        if not uploads:
            raise HTTPException(422, "no image in the request: send multipart/form-data with one or more files")
        loop = asyncio.get_running_loop()
        batcher.expect()
        try:
            photos = await loop.run_in_executor(decoder, decode_uploads, uploads, predictor.decode_size, max_megapixels, model_input)
        except BaseException:
            batcher.arrived()
            raise
        try:
            answers = batcher.submit([tensor for _, tensor in photos], expected=True)
        except QueueFull as busy:
            raise HTTPException(503, f"busy: {busy}; try again", headers={"Retry-After": str(RETRY_AFTER_S)}) from None
        rows = await asyncio.wrap_future(answers)
        return JSONResponse([
            predictor.answer(name, calibrated, raw, top_k, min_confidence).as_dict()
            for (name, _), (calibrated, raw) in zip(photos, rows)
        ])

    @app.post("/explain", dependencies=guarded, response_class=Response)
    async def explain(request: Request, class_name: str | None = Query(None, alias="class")) -> Response:
        """The Grad-CAM overlay of the first uploaded photo as a PNG (the top class, or `?class=`); its answers in
        the X-Predictions header (JSON)."""
        if predictor.model is None:
            raise HTTPException(409, "this server runs an exported ONNX model: it has no gradients to explain with")
        if class_name is not None:
            try:
                predictor.class_index(class_name)
            except ExplainError as error:
                raise HTTPException(422, str(error)) from None
        uploads = await read_uploads(request, max_bytes, 1)
        if not uploads:
            raise HTTPException(422, "no image in the request: send multipart/form-data with one file")
        loop = asyncio.get_running_loop()
        photos = await loop.run_in_executor(decoder, decode_uploads, uploads, predictor.decode_size, max_megapixels)
        explanation = (await loop.run_in_executor(explainer, predictor.explain, photos[0][1], 5, class_name))[0]
        png = await loop.run_in_executor(explainer, overlay_png, explanation.overlay)
        answers = [p.as_dict() for p in explanation.predictions]
        return Response(png, media_type="image/png", headers={
            "X-Predictions": json.dumps(answers, ensure_ascii=True), "X-Explained": quote(explanation.explained),
            "Cache-Control": "no-store",
        })

    @app.get("/openapi.json", dependencies=guarded, include_in_schema=False)
    def openapi() -> dict:
        return app.openapi()

    @app.get("/report", response_class=HTMLResponse, dependencies=guarded)
    def report() -> FileResponse:
        if run is None or not run.report_file.is_file():
            raise HTTPException(404, "this model has no report.html (tlab compare writes one; tlab report rebuilds it)")
        return FileResponse(run.report_file, media_type="text/html")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (PAGE_FILES / "serve.html").read_text()

    @app.get("/page.js", include_in_schema=False)
    def page_script() -> Response:
        return Response((PAGE_FILES / "serve.js").read_text(), media_type="text/javascript")

    @app.get("/page.css", include_in_schema=False)
    def page_style() -> Response:
        return Response((PAGE_FILES / "serve.css").read_text(), media_type="text/css")

    app.router.on_shutdown.append(lambda: decoder.shutdown(wait=False, cancel_futures=True))
    app.router.on_shutdown.append(batcher.close)
    return RequestGuard(app, max_body_bytes=max_files * (max_bytes + 64 * 1024))


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(token: str | None) -> str | None:
    """`token`, else $TLAB_SERVE_TOKEN, else None (no token required)."""
    return token or os.environ.get(TOKEN_ENV) or None


def serve(
    source: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    strategy: str | None = None,
    max_bytes: int = MAX_BYTES,
    max_megapixels: float = MAX_MEGAPIXELS,
    token: str | None = None,
    precision: str = "auto",
    min_confidence: float = 0.0,
    tta: bool = False,
) -> None:
    """Run the app with uvicorn: h11 with a deadline for request headers, idle keep-alive closed after 5 s."""
    import uvicorn

    check_can_listen(host, port)
    app = create_app(
        source, strategy, max_bytes, max_megapixels=max_megapixels, token=resolve_token(token), precision=precision,
        min_confidence=min_confidence, tta=tta, own_process=True,
    )
    uvicorn.run(
        app, host=host, port=port, log_level="info", http=header_deadline_protocol(), timeout_keep_alive=5,
        limit_concurrency=64, server_header=False,
    )


class CannotListenError(ValueError):
    """The address or port `tlab serve` was given cannot be listened on (in use, not this machine's)."""


def check_can_listen(host: str, port: int) -> None:
    """A `CannotListenError` saying why when `host`:`port` cannot be bound, found before the model loads (seconds)
    rather than after. Bound as uvicorn binds (SO_REUSEADDR), then let go."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            why = "in use, by another server or an earlier tlab serve; pass another --port"
        else:
            why = f"{error.strerror or error}; --host must name this machine, e.g. 127.0.0.1 or 0.0.0.0"
        raise CannotListenError(f"--host {host} --port {port}: cannot listen there ({why})") from None


def header_deadline_protocol() -> type:
    """uvicorn's HTTP/1.1 protocol, closing a connection that has not sent a request's headers within
    `HEADER_SECONDS` of opening (or of its previous response): stalled connections do not pile up."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(HEADER_SECONDS, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadline

