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
from fastapi import FastAPI
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


def client_of(app: FastAPI) -> TestClient:
    """A test client addressing the app as a browser on this machine does."""
    return TestClient(app, base_url="http://127.0.0.1:8765")


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
    client = client_of(create_app(tmp_path, max_upload_mb=0.05))
    data = wav_bytes(3.0)  # 192 kB
    assert len(data) > 0.05 * 2**20
    response = upload(client, data)
    assert response.status_code == 413
    assert "0.05 MiB" in response.json()["detail"]
    assert client.get("/api/files").json() == []
    assert stored_files(tmp_path) == set()
    assert upload(client, wav_bytes(0.5)).status_code == 201  # 32 kB fits


def test_a_file_that_does_not_decode_is_refused(tmp_path: Path) -> None:
    client = client_of(create_app(tmp_path))
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
    client = client_of(create_app(root))
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1,\n{secret}\n".encode()
    assert upload(client, playlist, "list.m3u8").status_code == 400  # FFmpeg would follow it
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
    client = client_of(create_app(tmp_path, token="s3cret"))
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
    options = client_of(create_app(tmp_path)).get("/api/options").json()
    fields = {field["flag"]: field for field in options["fields"]}
    assert fields["--steps"]["default"] == DEFAULT_STEPS
    assert fields["--sampler"]["default"] == "auto" and "dps" in fields["--sampler"]["choices"]
    assert fields["--clip-level"]["section"] == "declipping"
    assert fields["--no-projection"]["kind"] == "flag"
    assert not {"--rir", "--mask", "-o", "--gap", "--ray"} & set(fields)
    assert "phase_retrieval" not in options["tasks"] and "declipping" in options["tasks"]
    assert {"tiny", "embedded", "stable-audio"} <= set(options["priors"])


def test_a_job_restores_the_marked_gap_and_survives_a_restart(tmp_path: Path) -> None:
    client = client_of(create_app(tmp_path))
    entry = upload(client, wav_bytes()).json()
    bad = client.post("/api/jobs", json=inpainting(entry["id"], **{"--steps": "1"}))
    assert bad.status_code == 400 and "--steps" in bad.json()["detail"]
    job = client.post("/api/jobs", json=inpainting(entry["id"], **{"--seed": "7"})).json()
    job = wait_for(client, job["id"])
    assert job["status"] == "done", job["error"]
    assert job["record"]["seed"] == 7 and job["progress"]["step"] == 2

    restarted = client_of(create_app(tmp_path))  # a new server over the same store
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
    client = client_of(create_app(tmp_path))
    entry = upload(client, wav_bytes()).json()
    store = Store(tmp_path)
    job = client.post("/api/jobs", json=inpainting(entry["id"])).json()
    wait_for(client, job["id"])
    store.update_job(job["id"], status="running", record=None, progress={"step": 1})
    restarted = client_of(create_app(tmp_path))
    assert wait_for(restarted, job["id"])["status"] == "done"


def test_requests_from_other_sites_and_names_are_refused(tmp_path: Path) -> None:
    client = client_of(create_app(tmp_path))
    assert client.get("/api/options").status_code == 200
    rebound = client.get("/api/files", headers={"host": "evil.example:8765"})
    assert rebound.status_code == 421  # DNS rebinding: a page of evil.example on 127.0.0.1
    cross = client.post("/api/files", params={"name": "x.wav"}, content=wav_bytes(),
                        headers={"origin": "http://evil.example"})
    assert cross.status_code == 403 and client.get("/api/files").json() == []
    same = client.post("/api/files", params={"name": "x.wav"}, content=wav_bytes(),
                       headers={"origin": "http://127.0.0.1:8765"})
    assert same.status_code == 201


def test_a_recording_is_refused_by_its_header_before_decoding(tmp_path: Path) -> None:
    client = client_of(create_app(tmp_path, max_minutes=0.04))  # 2.4 s
    response = upload(client, wav_bytes(3.0))
    assert response.status_code == 413 and "says 0.1" in response.json()["detail"]
    many = io.BytesIO()
    sf.write(many, np.full((1600, 10), 0.1, "float32"), RATE, format="WAV")
    response = upload(client, many.getvalue())
    assert response.status_code == 400 and "10 channels" in response.json()["detail"]
    assert stored_files(tmp_path) == set()


def test_malformed_job_requests_are_bad_requests(tmp_path: Path) -> None:
    client = client_of(create_app(tmp_path))
    entry = upload(client, wav_bytes()).json()
    for bad in ({"gaps": [1]}, {"gaps": [[None, 2]]}, {"gaps": [[-1, 2]]}, {"gaps": [[2, 1]]},
                {"options": ["--steps"]}, {"options": {"--steps": {"a": 1}}},
                {"options": {"--out-rate": "1000000000"}}, {"task": "phase_retrieval!"}):
        response = client.post("/api/jobs", json={**inpainting(entry["id"]), **bad})
        assert response.status_code == 400, (bad, response.text)
    assert client.get("/api/jobs").json() == []


def test_a_job_that_stopped_the_server_twice_is_not_run_again(tmp_path: Path) -> None:
    client = client_of(create_app(tmp_path))
    entry = upload(client, wav_bytes()).json()
    job = client.post("/api/jobs", json=inpainting(entry["id"])).json()
    wait_for(client, job["id"])
    Store(tmp_path).update_job(job["id"], status="running", attempts=2)
    restarted = client_of(create_app(tmp_path))
    failed = restarted.get(f"/api/jobs/{job['id']}").json()
    assert failed["status"] == "failed" and "2 times" in failed["error"]


def test_downloads_keep_any_file_name(tmp_path: Path) -> None:
    client = client_of(create_app(tmp_path))
    entry = upload(client, wav_bytes(), name='曲 "mix".wav').json()
    job = wait_for(client, client.post("/api/jobs", json=inpainting(entry["id"])).json()["id"])
    for fmt in ("wav", "flac"):
        response = client.get(f"/api/jobs/{job['id']}/audio/restored.wav",
                              params={"format": fmt})
        assert response.status_code == 200, fmt
        assert "%E6%9B%B2" in response.headers["content-disposition"]


def test_a_second_studio_on_the_same_store_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import fcntl

    with (tmp_path / "studio.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["studio", "--store", str(tmp_path), "--port", "0"]) == 2
    assert "another studio" in capsys.readouterr().err
