"""``diffmusic restore FOLDER --ray local``: the same jobs, tree and skip rule as a local batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from signals import music_like

from diffmusic.cli import main

pytest.importorskip("ray", reason="Ray is part of the test extra")
RESTORE = ["--task", "inpainting", "--gap", "0.4:0.6", "--prior", "tiny", "--steps", "2"]


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_ray_batch_writes_what_a_local_batch_writes_and_resumes(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    album = tmp_path / "album"
    (album / "disc2").mkdir(parents=True)
    for k, name in enumerate(["a.wav", "disc2/b.flac"]):
        sf.write(album / name, music_like(k, 16000).numpy(), 16000)
    (album / "broken.wav").write_bytes(b"not audio" * 20)
    assert main(["restore", str(album), "-o", str(tmp_path / "here"), *RESTORE]) == 3
    capsys.readouterr()

    code = main(["restore", str(album), "-o", str(tmp_path / "ray"), "--ray", "local",
                 *RESTORE])
    err = capsys.readouterr().err
    assert code == 3 and "2 done, 0 skipped, 1 failed" in err and "broken.wav" in err
    for name in ["a.wav", "disc2/b.flac"]:
        here, _ = sf.read(tmp_path / "here" / name)
        there, _ = sf.read(tmp_path / "ray" / name)
        np.testing.assert_allclose(there, here, atol=1e-5)
    assert not [p for p in (tmp_path / "ray").rglob(".*")]  # no temporary file left

    (tmp_path / "ray" / "a.wav").unlink()  # as if the run had been killed before writing a.wav
    code = main(["restore", str(album), "-o", str(tmp_path / "ray"), "--ray", "local",
                 *RESTORE])
    assert code == 3 and "1 done, 1 skipped, 1 failed" in capsys.readouterr().err
    assert torch.from_numpy(sf.read(tmp_path / "ray" / "a.wav")[0]).isfinite().all()


def test_ray_refuses_a_measurement_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clean = tmp_path / "clean.wav"
    sf.write(clean, music_like(0, 16000).numpy(), 16000)
    assert main(["degrade", str(clean), "--task", "inpainting", "-o", str(tmp_path / "m"),
                 "--quiet"]) == 0
    assert main(["restore", str(tmp_path / "m"), "-o", str(tmp_path / "r.wav"), "--ray",
                 "local"]) == 2
    assert "--ray restores files given --task" in capsys.readouterr().err
