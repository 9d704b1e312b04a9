"""The studio's browser components: pinned, checked, and a clear error when they are missing."""

from __future__ import annotations

import io
import tarfile
import urllib.request
from pathlib import Path

import pytest

from diffmusic.studio import assets


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_tarball_that_is_not_the_pinned_release_is_refused(tmp_path: Path) -> None:
    forged = tarball({name: b"alert('not wavesurfer')" for name in assets.VENDOR_FILES})
    with pytest.raises(assets.MissingAssets, match="SHA-512"):
        assets.unpack(forged, tmp_path)
    assert not assets.installed(tmp_path) and list(tmp_path.iterdir()) == []


def test_offline_without_the_components_says_how_to_install_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(assets.MissingAssets, match=r"python -m diffmusic\.studio\.assets"):
        assets.ensure_assets(tmp_path / "vendor")


def test_the_installed_components_are_served_without_the_network(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", None)  # any fetch would fail
    folder = assets.ensure_assets()
    assert assets.installed(folder)
    assert (folder / "LICENSE").read_text().startswith("BSD 3-Clause")
