"""The studio's web API (FastAPI) and its page: upload, look, mark, restore, compare.

Routes (JSON unless said otherwise):

- ``GET /``: the page; ``GET /static/...``: its script, style and the wavesurfer.js files.
- ``GET /api/options``: tasks, the form's fields (the ``restore`` parser's), priors, limits.
- ``POST /api/files?name=NAME``: upload (the body is the file); checked by decoding it.
- ``GET /api/files``, ``GET /api/files/{id}``, ``GET /api/files/{id}/audio`` (wav),
  ``GET /api/files/{id}/gaps``: detected dropouts.
- ``POST /api/labels``: an Audacity label file (the body) read as gaps.
- ``POST /api/jobs``: queue a restoration; ``GET /api/jobs``, ``GET /api/jobs/{id}``,
  ``GET /api/jobs/{id}/audio/{name}?format=wav|flac``, ``GET /api/jobs/{id}/difference``.

With a token every request must carry it: ``Authorization: Bearer TOKEN``, the
``diffmusic_token`` cookie (set when the page is opened as ``/?token=TOKEN``), or ``?token=``.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from diffmusic import package_version
from diffmusic.audio import AudioError, audio_info, load_audio, require_signal, save_audio
from diffmusic.cli.errors import CliError
from diffmusic.gaps import detect_gaps, read_labels
from diffmusic.names import DEFAULT_PRIOR, TASKS
from diffmusic.operators import OPERATORS
from diffmusic.studio.assets import ensure_assets
from diffmusic.studio.jobs import JobRunner, form_fields, parse_job, prior_choices, restore_argv
from diffmusic.studio.store import PLAYBACK, AudioFile, NotInStore, Store, new_id, safe_suffix

STATIC = Path(__file__).parent / "static"
TOKEN_COOKIE = "diffmusic_token"
MAX_LABELS_BYTES = 1 << 20
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
"""Host names of a studio bound to loopback."""
MAX_CHANNELS, MAX_RATE = 8, 384000
STUDIO_TASKS = tuple(t for t in TASKS if OPERATORS[t].measurement_kind == "audio")
"""Tasks whose damaged input is a recording (phase retrieval's is a magnitude array)."""


def create_app(root: Path, token: str | None = None, max_upload_mb: float = 200.0,
               prior_folders: list[Path] | None = None, max_minutes: float = 30.0,
               hosts: tuple[str, ...] = LOOPBACK_NAMES) -> FastAPI:
    """The studio over the store in ``root`` (created if missing), its job runner started.

    Args:
        root: The store's folder (SQLite database and audio).
        token: Required on every request when given.
        max_upload_mb: Largest upload in MiB.
        prior_folders: Prior folders offered besides the registered names.
        max_minutes: Longest recording accepted, read from its header before decoding.
        hosts: Host names the requests may address (``"*"``: any); the loopback names by
            default, so that a web page whose name resolves to 127.0.0.1 (DNS rebinding)
            cannot reach the studio.
    """
    store = Store(root)
    runner = JobRunner(store)
    priors = prior_choices(prior_folders or [])
    max_bytes = int(max_upload_mb * 2**20)
    app = FastAPI(title="diffmusic studio", version=package_version(), docs_url=None,
                  redoc_url=None)
    app.state.store, app.state.runner = store, runner
    app.mount("/static/vendor", StaticFiles(directory=ensure_assets()), name="vendor")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def guard(request: Request, call_next):  # noqa: ANN202
        host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
        if "*" not in hosts and host not in hosts:
            return JSONResponse({"detail": f"unknown host {host!r}"}, status_code=421)
        origin = request.headers.get("origin")
        if (request.method not in ("GET", "HEAD") and origin is not None
                and urlsplit(origin).netloc != request.headers.get("host")):
            return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
        if token is None:
            return await call_next(request)
        bearer = request.headers.get("authorization", "")
        given = (bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else
                 request.cookies.get(TOKEN_COOKIE) or request.query_params.get("token", ""))
        if not hmac.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"detail": "missing or wrong token"}, status_code=401)
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(NotInStore)
    async def not_in_store(request: Request, error: NotInStore) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/options")
    def options() -> dict:
        return {"version": package_version(), "tasks": list(STUDIO_TASKS),
                "fields": form_fields(), "priors": list(priors), "default_prior": DEFAULT_PRIOR,
                "max_upload_mb": max_upload_mb}

    @app.post("/api/files", status_code=201)
    async def upload(request: Request, name: str = "upload") -> dict:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise HTTPException(413, f"the upload exceeds {max_upload_mb:g} MiB")
        temporary = store.incoming().with_suffix(safe_suffix(name))
        size = 0
        try:
            with temporary.open("wb") as file:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > max_bytes:
                        raise HTTPException(413, f"the upload exceeds {max_upload_mb:g} MiB")
                    file.write(chunk)
            return (await run_in_threadpool(add_upload, store, temporary, name,
                                            max_minutes)).as_json()
        finally:
            temporary.unlink(missing_ok=True)

    @app.get("/api/files")
    def files() -> list[dict]:
        return [file.as_json() for file in store.files()]

    @app.get("/api/files/{file_id}")
    def file(file_id: str) -> dict:
        return store.file(file_id).as_json()

    @app.get("/api/files/{file_id}/audio")
    def file_audio(file_id: str) -> FileResponse:
        store.file(file_id)
        return FileResponse(store.folder("files", file_id) / PLAYBACK, media_type="audio/wav")

    @app.get("/api/files/{file_id}/gaps")
    def file_gaps(file_id: str, threshold: float = -60.0, min_duration: float = 0.02) -> dict:
        if not (math.isfinite(threshold) and threshold <= 0 and 0.001 <= min_duration <= 60):
            raise HTTPException(400, "threshold is a level in dBFS <= 0 and min_duration "
                                     "0.001 to 60 s")
        entry = store.file(file_id)
        wave, rate = load_audio(store.folder("files", file_id) / entry.source)
        return {"gaps": detect_gaps(wave, rate, threshold, min_duration)}

    @app.post("/api/labels")
    async def labels(request: Request) -> dict:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LABELS_BYTES:
                raise HTTPException(413, "a label file is at most 1 MiB")
        path = store.incoming().with_suffix(".txt")
        try:
            path.write_bytes(body)
            return {"gaps": read_labels(path)}
        except ValueError as error:
            message = " ".join(str(error).replace(str(path), "labels").split())
            raise HTTPException(400, message) from None
        finally:
            path.unlink(missing_ok=True)

    @app.post("/api/jobs", status_code=201)
    def submit(request: dict) -> dict:
        entry = store.file(str(request.get("file", "")))
        job_id = new_id()
        separation = request.get("task") == "source_separation"
        folder = store.folder("jobs", job_id)
        out = folder if separation else folder / "restored.wav"
        try:
            argv = restore_argv(request, store.folder("files", entry.id) / entry.source, out,
                                priors)
            outputs = parse_job(argv).outputs
        except (CliError, ValueError, TypeError) as error:
            raise HTTPException(400, " ".join(str(error).split())) from None
        store.add_job(job_id, entry.id, request, argv, [p.name for p in outputs])
        runner.submit(job_id)
        return store.job(job_id)

    @app.get("/api/jobs")
    def jobs() -> list[dict]:
        names = {entry.id: entry.name for entry in store.files()}
        return [{**job, "file_name": names.get(job["file_id"])} for job in store.jobs()][::-1]

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str) -> dict:
        return store.job(job_id)

    @app.get("/api/jobs/{job_id}/audio/{name}")
    def job_audio(job_id: str, name: str, format: str = "wav") -> FileResponse:
        if format not in ("wav", "flac"):
            raise HTTPException(400, "format is wav or flac")
        path = store.job_audio(job_id, name)
        if not path.is_file():
            raise HTTPException(409, "the job has not finished")
        if format == "flac":  # transcoded once, kept beside the wav
            path = derived(path.with_suffix(".flac"), lambda: load_audio(path))
        stem = Path(store.file(store.job(job_id)["file_id"]).name).stem or "restored"
        return FileResponse(path, media_type=f"audio/{format}",
                            filename=f"{stem}-{path.name}")

    @app.get("/api/jobs/{job_id}/difference")
    def difference(job_id: str) -> FileResponse:
        entry = store.job(job_id)
        if entry["status"] != "done" or len(entry["outputs"]) != 1:
            raise HTTPException(409, "a difference needs a finished job with one output")
        restored_path = store.job_audio(job_id, entry["outputs"][0])

        def restored_minus_original() -> tuple[torch.Tensor, int]:
            restored, rate = load_audio(restored_path)
            source = store.file(entry["file_id"])
            original, _ = load_audio(store.folder("files", source.id) / source.source, rate)
            length = min(restored.shape[-1], original.shape[-1])
            return restored[:, :length] - original[:, :length], rate

        path = derived(store.folder("jobs", job_id) / "difference.wav", restored_minus_original)
        return FileResponse(path, media_type="audio/wav", filename="difference.wav")

    return app


def derived(path: Path, make: Callable[[], tuple[torch.Tensor, int]]) -> Path:
    """``path``, first written from ``make()`` (audio and its rate) when it does not exist."""
    if not path.is_file():
        save_audio(path, *make())
    return path


def add_upload(store: Store, temporary: Path, name: str, max_minutes: float) -> AudioFile:
    """Decode an upload (refusing what is not audio, or what its header says is longer than
    ``max_minutes``, or has more channels or a higher rate than we restore, before decoding it),
    keep the original and a wav for playback.

    Raises:
        HTTPException: 400 with the decoder's complaint (the store's path left out), 413 for
            a recording too long.
    """
    try:
        info = audio_info(temporary)
        if info.seconds is None or info.seconds > max_minutes * 60:
            raise HTTPException(413, f"recordings of up to {max_minutes:g} minutes, and this "
                                     "one's header " + ("does not say how long it is"
                                                        if info.seconds is None else
                                                        f"says {info.seconds / 60:.1f}"))
        if not (0 < info.channels <= MAX_CHANNELS and 0 < info.sample_rate <= MAX_RATE):
            raise HTTPException(400, f"{info.channels} channels at {info.sample_rate} Hz: at "
                                     f"most {MAX_CHANNELS} channels at {MAX_RATE} Hz")
        wave, rate = load_audio(temporary)
        require_signal(wave, temporary)
    except AudioError as error:
        message = str(error).replace(str(temporary), "the upload")
        raise HTTPException(400, " ".join(message.split())) from None
    file_id = new_id()
    folder = store.folder("files", file_id)
    folder.mkdir()
    source = "original" + temporary.suffix
    temporary.replace(folder / source)
    save_audio(folder / PLAYBACK, wave, rate, bits=16)
    entry = AudioFile(file_id, Path(name.replace("\\", "/")).name[:200] or "upload", source,
                      rate, wave.shape[0], wave.shape[-1], time.time())
    store.add_file(entry)
    return entry

