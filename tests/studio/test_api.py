"""The studio's API: uploads checked by size and by decoding, no path outside the store, the
token, jobs that run the restore command's code and survive a restart."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient
from signals import music_like

from diffmusic.cli import main
from diffmusic.cli.parsers import DEFAULT_STEPS
from diffmusic.studio.app import create_app
from diffmusic.studio.store import Store

RATE = 16000


def wav_bytes(seconds: float = 3.0) -> bytes:
    """A stereo music-like 16-bit wav."""
    n = int(seconds * RATE)
    wave = torch.stack([music_like(5, n=n), music_like(6, n=n)]).T.numpy() * 0.8
    buffer = io.BytesIO()
    sf.write(buffer, wave, RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def upload(client: TestClient, data: bytes, name: str = "clip.wav"):  # noqa: ANN201
    return client.post("/api/files", params={"name": name}, content=data)


def wait_for(client: TestClient, job_id: str, timeout: float = 120.0) -> dict:
    """The job once it has finished or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


def inpainting(file_id: str, **options: str) -> dict:
    return {"file": file_id, "task": "inpainting", "gaps": [[1.2, 1.5]],
            "options": {"--prior": "tiny", "--steps": "2", **options}}


def stored_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and p.name != "studio.sqlite"}


def test_upload_over_the_limit_is_refused_and_nothing_kept(tmp_path: Path) -> None:
    client = TestClient(create_app(tmp_path, max_upload_mb=0.05))
    data = wav_bytes(3.0)  # 192 kB
    assert len(data) > 0.05 * 2**20
    response = upload(client, data)
    assert response.status_code == 413
    assert "0.05 MiB" in response.json()["detail"]
    assert client.get("/api/files").json() == []
    assert stored_files(tmp_path) == set()
    assert upload(client, wav_bytes(0.5)).status_code == 201  # 32 kB fits


def test_a_file_that_does_not_decode_is_refused(tmp_path: Path) -> None:
    client = TestClient(create_app(tmp_path))
    response = upload(client, b"RIFF not really a wav file at all" * 10, "song.wav")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "the upload" in detail and str(tmp_path) not in detail
    silent = io.BytesIO()
    sf.write(silent, np.zeros((RATE, 2), "float32"), RATE, format="WAV")
    response = upload(client, silent.getvalue())
    assert response.status_code == 400 and "silent" in response.json()["detail"]
    assert client.get("/api/files").json() == [] and stored_files(tmp_path) == set()


def test_no_request_reaches_a_path_outside_the_store(tmp_path: Path) -> None:
    root = tmp_path / "store"
    secret = tmp_path / "secret.wav"
    secret.write_bytes(wav_bytes(1.0))
    client = TestClient(create_app(root))
    entry = upload(client, wav_bytes(), name="../../../escape.wav").json()
    assert entry["name"] == "escape.wav"
    assert not (tmp_path / "escape.wav").exists()
    assert all(root in p.parents for p in stored_files(root))
    for path in ("/api/files/..%2F..%2Fsecret.wav/audio", "/api/files/%2E%2E/audio",
                 "/api/files/..%2Fsecret/gaps", f"/api/files/{entry['id']}%2F..%2F..",
                 "/api/jobs/..%2F..%2Fsecret.wav", "/static/..%2F..%2F..%2Fsecret.wav",
                 "/static/vendor/..%2F..%2Fapp.py"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.content != secret.read_bytes()
    job = client.post("/api/jobs", json=inpainting(entry["id"])).json()
    for name in ("../../secret.wav", "..%2F..%2Fsecret.wav", "restored.json"):
        assert client.get(f"/api/jobs/{job['id']}/audio/{name}").status_code == 404, name
    for options in ({"--prior": str(tmp_path)}, {"--rir": str(secret)}, {"--mask": str(secret)},
                    {"--prompt": str(tmp_path / "prompts.json")}):
        response = client.post("/api/jobs", json=inpainting(entry["id"], **options))
        assert response.status_code == 400, options
    traversal = client.post("/api/jobs", json={**inpainting(entry["id"]), "file": "../secret"})
    assert traversal.status_code == 404


def test_every_request_needs_the_token(tmp_path: Path) -> None:
    client = TestClient(create_app(tmp_path, token="s3cret"))
    for path in ("/", "/api/options", "/api/files", "/static/studio.js"):
        assert client.get(path).status_code == 401, path
    assert upload(client, wav_bytes()).status_code == 401
    assert client.get("/api/options", headers={"Authorization": "Bearer wrong"}).status_code \
        == 401
    assert client.get("/api/options", headers={"Authorization": "Bearer s3cret"}).status_code \
        == 200
    page = client.get("/?token=s3cret")  # the printed address: sets the cookie for the page
    assert page.status_code == 200 and client.cookies.get("diffmusic_token") == "s3cret"
    assert client.get("/static/studio.js").status_code == 200


def test_other_hosts_than_loopback_require_a_token(capsys: pytest.CaptureFixture) -> None:
    assert main(["studio", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--token" in capsys.readouterr().err


def test_form_offers_the_restore_commands_options_and_defaults(tmp_path: Path) -> None:
    options = TestClient(create_app(tmp_path)).get("/api/options").json()
    fields = {field["flag"]: field for field in options["fields"]}
    assert fields["--steps"]["default"] == DEFAULT_STEPS
    assert fields["--sampler"]["default"] == "auto" and "dps" in fields["--sampler"]["choices"]
    assert fields["--clip-level"]["section"] == "declipping"
    assert fields["--no-projection"]["kind"] == "flag"
    assert not {"--rir", "--mask", "-o", "--gap", "--ray"} & set(fields)
    assert "phase_retrieval" not in options["tasks"] and "declipping" in options["tasks"]
    assert {"tiny", "embedded", "stable-audio"} <= set(options["priors"])


def test_a_job_restores_the_marked_gap_and_survives_a_restart(tmp_path: Path) -> None:
    client = TestClient(create_app(tmp_path))
    entry = upload(client, wav_bytes()).json()
    bad = client.post("/api/jobs", json=inpainting(entry["id"], **{"--steps": "1"}))
    assert bad.status_code == 400 and "--steps" in bad.json()["detail"]
    job = client.post("/api/jobs", json=inpainting(entry["id"], **{"--seed": "7"})).json()
    job = wait_for(client, job["id"])
    assert job["status"] == "done", job["error"]
    assert job["record"]["seed"] == 7 and job["progress"]["step"] == 2

    restarted = TestClient(create_app(tmp_path))  # a new server over the same store
    listed = restarted.get("/api/jobs").json()
    assert [j["id"] for j in listed] == [job["id"]] and listed[0]["status"] == "done"
    original, _ = sf.read(io.BytesIO(wav_bytes()), dtype="float32")
    wav = restarted.get(f"/api/jobs/{job['id']}/audio/restored.wav")
    flac = restarted.get(f"/api/jobs/{job['id']}/audio/restored.wav", params={"format": "flac"})
    assert "attachment" in flac.headers["content-disposition"]
    restored, rate = sf.read(io.BytesIO(wav.content), dtype="float32")
    from_flac, flac_rate = sf.read(io.BytesIO(flac.content), dtype="float32")
    assert rate == flac_rate == RATE and restored.shape == from_flac.shape == original.shape
    assert np.abs(from_flac - restored).max() < 1e-4
    difference, _ = sf.read(io.BytesIO(restarted.get(f"/api/jobs/{job['id']}/difference")
                                       .content), dtype="float32")
    np.testing.assert_allclose(difference, restored - original, atol=1e-6)
    time_s = np.arange(len(original)) / RATE
    assert np.abs(difference[(time_s < 1.1) | (time_s > 1.6)]).max() < 1e-3
    assert np.abs(difference[(time_s > 1.25) & (time_s < 1.45)]).mean() > 1e-3


def test_jobs_a_stopped_server_left_run_at_the_next_start(tmp_path: Path) -> None:
    client = TestClient(create_app(tmp_path))
    entry = upload(client, wav_bytes()).json()
    store = Store(tmp_path)
    job = client.post("/api/jobs", json=inpainting(entry["id"])).json()
    wait_for(client, job["id"])
    store.update_job(job["id"], status="running", record=None, progress={"step": 1})
    restarted = TestClient(create_app(tmp_path))
    assert wait_for(restarted, job["id"])["status"] == "done"
