"""`tlab serve`: a trained model as a local web service and a page to try it (FastAPI, run by uvicorn).

The model is loaded once; inference runs in a worker thread, one batch at a time, so the event loop
keeps answering. Uploads are decoded in memory: no path from a request ever reaches the filesystem.
"""

import asyncio
import threading
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from PIL import Image

from .data.decode import ImageTooLargeError, NotAnImageError, UnreadableImageError, decode_bytes
from .inference import Predictor, load
from .train.rundir import RunDir

MAX_BYTES = 10 * 1024 * 1024
MAX_FILES = 16
PAGE = Path(__file__).parent / "report" / "templates" / "serve.html"


def _open_upload(name: str, data: bytes) -> Image.Image:
    """The upload as an RGB PIL image, or a 4xx naming what is wrong."""
    try:
        return decode_bytes(data, name)
    except NotAnImageError as error:
        raise HTTPException(415, str(error)) from None
    except ImageTooLargeError as error:
        raise HTTPException(413, str(error)) from None
    except UnreadableImageError as error:
        raise HTTPException(422, str(error)) from None


def create_app(source: str | Path, strategy: str | None = None, max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES) -> FastAPI:
    """The app for the model of `source` (run directory, checkpoint or exported .onnx)."""
    predictor: Predictor = load(source, strategy, runtime="auto")
    run = RunDir(source) if Path(source).is_dir() else None
    lock = threading.Lock()
    app = FastAPI(title="transferlab", description=f"Image classifier from {source}")

    def predict_images(images: list[tuple[str, Image.Image]], top_k: int) -> list[dict]:
        with lock:
            results = predictor.predict([image for _, image in images], top_k)
        return [{"path": name, "predictions": [p.as_dict() for p in r.predictions]} for (name, _), r in zip(images, results)]

    @app.get("/health")
    def health() -> dict:
        return {
            "status": "ok", "model": predictor.source, "strategy": predictor.strategy, "runtime": predictor.backend,
            "classes": len(predictor.classes), "image_size": predictor.config.image_size,
        }

    @app.get("/classes")
    def classes() -> list[dict]:
        return [{"index": i, "class": c, "label": n} for i, (c, n) in enumerate(zip(predictor.classes, predictor.names))]

    @app.post("/predict")
    async def predict(request: Request, top_k: int = Query(5, ge=1, le=1000)) -> JSONResponse:
        length = int(request.headers.get("content-length") or 0)
        if length > max_bytes * max_files:
            raise HTTPException(413, f"request of {length:,} bytes is over the limit of {max_bytes * max_files:,}")
        form = await request.form()
        uploads = [value for _, value in form.multi_items() if hasattr(value, "read")]
        if not uploads:
            raise HTTPException(422, "no image in the request: send multipart/form-data with one or more files")
        if len(uploads) > max_files:
            raise HTTPException(413, f"{len(uploads)} files is over the limit of {max_files} per request")
        images = []
        for upload in uploads:
            upload: UploadFile
            data = await upload.read(max_bytes + 1)
            name = upload.filename or "upload"
            if len(data) > max_bytes:
                raise HTTPException(413, f"{name}: over the limit of {max_bytes:,} bytes per file")
            images.append((name, _open_upload(name, data)))
        return JSONResponse(await asyncio.to_thread(predict_images, images, top_k))

    @app.get("/report", response_class=HTMLResponse)
    def report() -> FileResponse:
        if run is None or not run.report_file.is_file():
            raise HTTPException(404, "this model has no report.html (tlab compare writes one; tlab report rebuilds it)")
        return FileResponse(run.report_file, media_type="text/html")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text()

    return app


def serve(source: str | Path, host: str = "127.0.0.1", port: int = 8000, strategy: str | None = None, max_bytes: int = MAX_BYTES) -> None:
    import uvicorn

    uvicorn.run(create_app(source, strategy, max_bytes), host=host, port=port, log_level="info")
