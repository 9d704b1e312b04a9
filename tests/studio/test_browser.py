"""The studio end to end in headless Chromium (Debian's, driven by Playwright): upload a clip, mark
a gap by dragging on the waveform, restore it with the tiny prior at 2 steps, compare, download.

``make test`` finds or unpacks Debian's Chromium (``tools/chromium.sh``); the screenshot goes to
``$DIFFMUSIC_TEST_OUTPUT/studio.png`` (default ``test-output/`` in the repository).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from signals import music_like

REPOSITORY = Path(__file__).resolve().parents[2]
OUTPUT = Path(os.environ.get("DIFFMUSIC_TEST_OUTPUT", REPOSITORY / "test-output"))
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
RATE = 22050


def chromium() -> str:
    """Debian's Chromium: ``$DIFFMUSIC_CHROMIUM`` (``make test`` sets it from
    ``tools/chromium.sh``), else the one on PATH."""
    path = os.environ.get("DIFFMUSIC_CHROMIUM") or shutil.which("chromium")
    assert path and os.access(path, os.X_OK), \
        "no Chromium: run `make test`, or DIFFMUSIC_CHROMIUM=$(tools/chromium.sh) pytest"
    return path


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[str]:
    """``diffmusic studio --port 0`` in a subprocess over a fresh store; yields its address."""
    server = subprocess.Popen(
        [sys.executable, "-m", "diffmusic.cli", "studio", "--port", "0", "--store",
         str(tmp_path / "store")], stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        match = re.search(r"(http://\S+)", line)
        assert match, f"the studio did not print its address: {line!r}"
        yield match[1]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """A 4 s stereo music-like clip at 22.05 kHz, 16-bit wav."""
    left = music_like(3, n=4 * RATE, rate=RATE)
    right = music_like(4, n=4 * RATE, rate=RATE)
    path = tmp_path / "clip.wav"
    sf.write(path, torch.stack([left, right]).T.numpy() * 0.8, RATE, subtype="PCM_16")
    return path


@pytest.mark.slow
def test_restore_a_marked_gap_in_the_browser(studio: str, clip: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400}, accept_downloads=True)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(studio)
        page.set_input_files("#upload", str(clip))
        expect(page.locator("#waveform")).to_have_attribute("data-ready", "true",
                                                            timeout=30_000)

        box = page.locator("#waveform").bounding_box()
        y = box["y"] + 40  # inside the waveform's 96 px, above the timeline and spectrogram
        page.mouse.move(box["x"] + 0.40 * box["width"], y)
        page.mouse.down()
        page.mouse.move(box["x"] + 0.45 * box["width"], y, steps=8)
        page.mouse.move(box["x"] + 0.50 * box["width"], y, steps=8)
        page.mouse.up()
        expect(page.locator("#regions li")).to_have_count(1)

        page.select_option("#task", "inpainting")
        page.select_option("[name='--prior']", "tiny")
        page.fill("[name='--steps']", "2")
        page.click("#restore")
        done = page.locator("#jobs li[data-status=done]")
        expect(done).to_have_count(1, timeout=180_000)
        done.get_by_role("button", name="Compare").click()
        expect(page.locator("#restored-player")).to_be_visible()
        expect(page.locator("#restored-player")).to_have_attribute("src", re.compile("restored"))
        expect(page.locator("#record")).to_contain_text('"final_loss"')

        with page.expect_download() as download:
            page.click("#download-wav")
        restored_path = tmp_path / "restored.wav"
        download.value.save_as(restored_path)
        page.wait_for_timeout(1500)  # the after-spectrogram renders
        page.screenshot(path=str(OUTPUT / "studio.png"), full_page=True)
        job_id = done.get_attribute("data-id")
        browser.close()
    assert not errors, errors

    original, rate = sf.read(clip, dtype="float32")
    restored, restored_rate = sf.read(restored_path, dtype="float32")
    assert restored_rate == rate == RATE
    assert restored.shape == original.shape
    with urllib.request.urlopen(f"{studio}api/jobs/{job_id}") as response:
        (start, end), = json.load(response)["request"]["gaps"]
    assert 0.35 * 4 < start < end < 0.55 * 4  # where the drag was, in seconds
    time = np.arange(len(original)) / rate
    outside = (time < start - 0.1) | (time > end + 0.1)
    inside = (time > start + 0.01) & (time < end - 0.01)
    # outside the gap the samples are the input's (16-bit in, 16-bit out)
    assert np.abs(restored[outside] - original[outside]).max() < 1e-3
    assert np.abs(restored[inside] - original[inside]).mean() > 1e-3
