"""The studio's browser components: wavesurfer.js (BSD-3-Clause) and its plugins, fetched once
from the npm registry, checked against the registry's SHA-512 and kept beside the package, so
that the studio then runs offline (no CDN).

``python -m diffmusic.studio.assets`` fetches them (the Makefile's set-up does).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

WAVESURFER_VERSION = "8.0.1"
WAVESURFER_URL = (f"https://registry.npmjs.org/wavesurfer.js/-/"
                  f"wavesurfer.js-{WAVESURFER_VERSION}.tgz")
WAVESURFER_SHA512 = ("h0OnRWSVTqIYLSw3/IVrBtsun/xw9L5u4FA3bjfSDTFMX/xswVWS1JwK4fFu3ulmxRUSHg8zQ"
                     "ORl6zENG983eg==")
"""The registry's ``dist.integrity`` of that version (base64 SHA-512 of the tarball)."""
VENDOR_FILES = ("LICENSE", "dist/wavesurfer.esm.js", "dist/plugins/regions.esm.js",
                "dist/plugins/spectrogram.esm.js", "dist/plugins/timeline.esm.js",
                "dist/plugins/zoom.esm.js")
"""The files of the tarball (under ``package/``) that the studio serves."""
VENDOR_DIR = Path(__file__).parent / "static" / "vendor" / f"wavesurfer-{WAVESURFER_VERSION}"
"""Where they are kept: ``VENDOR_DIR/<basename>``."""


class MissingAssets(RuntimeError):
    """The browser components are not installed and could not be fetched."""


def vendor_dir() -> Path:
    """The folder holding the components (``DIFFMUSIC_STUDIO_VENDOR`` overrides it)."""
    return Path(os.environ.get("DIFFMUSIC_STUDIO_VENDOR", VENDOR_DIR))


def installed(folder: Path | None = None) -> bool:
    """Whether every component lies in ``folder`` (default :func:`vendor_dir`)."""
    folder = folder or vendor_dir()
    return all((folder / Path(name).name).is_file() for name in VENDOR_FILES)


def unpack(tarball: bytes, folder: Path) -> None:
    """Check ``tarball`` against the pinned SHA-512 and write :data:`VENDOR_FILES` to ``folder``.

    Raises:
        MissingAssets: The digest differs or a file is missing from the tarball.
    """
    digest = base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if digest != WAVESURFER_SHA512:
        raise MissingAssets(f"wavesurfer.js {WAVESURFER_VERSION}: the tarball's SHA-512 differs "
                            "from the registry's; not installed")
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for name in VENDOR_FILES:
            try:
                member = archive.extractfile(f"package/{name}")
            except KeyError:
                member = None
            if member is None:
                raise MissingAssets(f"wavesurfer.js {WAVESURFER_VERSION}: {name} not in the "
                                    "tarball")
            target = folder / Path(name).name
            partial = target.with_suffix(target.suffix + ".part")
            partial.write_bytes(member.read())
            partial.replace(target)


def ensure_assets(folder: Path | None = None, timeout: float = 60.0) -> Path:
    """The folder of the components, fetched from the npm registry first when missing.

    Raises:
        MissingAssets: Not installed and the registry cannot be reached (offline), naming the
            command that installs them.
    """
    folder = folder or vendor_dir()
    if installed(folder):
        return folder
    try:
        with urllib.request.urlopen(WAVESURFER_URL, timeout=timeout) as response:
            tarball = response.read()
    except OSError as error:
        raise MissingAssets(f"the studio's waveform component (wavesurfer.js "
                            f"{WAVESURFER_VERSION}) is not installed and {WAVESURFER_URL} cannot "
                            f"be reached ({error}); run 'python -m diffmusic.studio.assets' once "
                            "on a machine with internet") from None
    unpack(tarball, folder)
    return folder


if __name__ == "__main__":
    try:
        print(f"wavesurfer.js {WAVESURFER_VERSION} in {ensure_assets()}")
    except MissingAssets as error:
        sys.exit(f"diffmusic: error: {error}")
