"""Real game music from Debian packages, converted to 16 kHz mono 16-bit wav.

Each package is fetched with ``apt-get download``, unpacked with ``dpkg-deb -x``, its music
files (and the music inside the zip archives of ufoai and nexuiz; tracker modules through
ffmpeg's libopenmpt; xblast's headerless PCM) are converted with ``ffmpeg`` and split into
train/validation by track, deterministically from a hash of the track name; the packages of
:data:`VALIDATION_ONLY` go to validation whole.
Outputs: ``DATA/music/{train,valid}/<package>__<track>.wav`` and
``DATA/licenses/<package>.copyright``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from diffmusic.names import SAMPLE_RATE

log = logging.getLogger(__name__)

MIN_SECONDS = 6.0
VALID_PERCENT = 10
AUDIO_SUFFIXES = (".ogg", ".opus", ".mp3", ".flac", ".wav", ".xm", ".it", ".s3m", ".mod", ".raw")

#: Package name -> regular expression a file's path (relative to the unpacked package) must
#: match to count as music; packages absent from the table contribute all their audio files.
PACKAGES: dict[str, str] = {
    "warzone2100-music": r"/music/",
    "ufoai-music": r"/music/",
    "wesnoth-1.16-music": r"/music/",
    "nexuiz-music": r"/cdtracks/",
    "singularity-music": r"/music/",
    "supertuxkart-data": r"/data/music/",
    "planetblupi-music-ogg": r"/music/",
    "freedroidrpg-data": r"/sound/music/",
    "megaglest-data": r"/music/",
    "frozen-bubble-data": r"/snd/.*zik",
    "hyperrogue-music": r"/music/",
    "asc-music": r"/music/",
    "fb-music-high": r"/snd/.*zik",
    "xblast-tnt-musics": r"/sounds/xbsng",
    "hedgewars-data": r"/Data/Music/",
    "pingus-data": r"/data/music/",
    "extremetuxracer-data": r"/etr/music/",
    "openclonk-data": r"/Music\.ocg/",
    "flare-game": r"/mods/[^/]+/music/(?!wind_ambient)",
    "lugaru-data": r"/Sounds/Music",
    "lincity-ng-data": r"/music/",
}

#: Packages held out of every training split: all their tracks go to validation
#: (``asc-music`` is issue 17's held-out validation package).
VALIDATION_ONLY = ("asc-music",)

#: Package -> package whose split it shares: its tracks are other renditions of that package's
#: tracks of the same name (fb-music-high: the tracker module of frozen-bubble's 2-player theme).
SPLIT_AS = {"fb-music-high": "frozen-bubble-data"}

#: ffmpeg input options of packages whose music is headerless PCM (xblast's songs: unsigned
#: 8-bit stereo at 22.05 kHz, as its sound server ``xbsndsrv.c`` plays them).
RAW_INPUT = {"xblast-tnt-musics": ("-f", "u8", "-ar", "22050", "-ac", "2")}

#: Zip archives (by file name) that hold a package's music.
ARCHIVES = ("0music.pk3", "music.pk3")

#: Suffixes of alternative renditions of one piece (fast, enhanced, hedgewars' sudden-death),
#: kept in the same split.
_VARIANT_SUFFIX = re.compile(r"(_fast|_f|_enhanced|_sd)$", re.IGNORECASE)

T = TypeVar("T")


@dataclass(frozen=True)
class Track:
    """One music file of a package.

    Attributes:
        package: Debian package name.
        name: File-system safe track name, unique within the package.
        path: Source audio file.
        seconds: Duration in seconds.
    """

    package: str
    name: str
    path: Path
    seconds: float

    @property
    def source(self) -> str:
        """The package whose split this track follows (see :data:`SPLIT_AS`)."""
        return SPLIT_AS.get(self.package, self.package)

    @property
    def group(self) -> str:
        """Split key: the track name without variant suffixes, in its split package."""
        return f"{self.source}/{_VARIANT_SUFFIX.sub('', self.name).lower()}"

    @property
    def input_options(self) -> tuple[str, ...]:
        """ffmpeg options that describe the source file (headerless PCM), else empty."""
        return RAW_INPUT.get(self.package, ())


def sanitize(text: str) -> str:
    """Map ``text`` to a file-system safe name (letters, digits, ``-``, ``_``, ``.``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.") or "track"


def stable_hash(text: str) -> int:
    """A platform-independent integer hash of ``text``."""
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big")


def split_groups(items: Sequence[T], group: Callable[[T], str], source: Callable[[T], str],
                 percent: int = VALID_PERCENT, min_groups: int = 4) -> dict[str, list[T]]:
    """Split items into train/validation by group, deterministically.

    A group goes to validation when its hash falls below ``percent``. Every source with at
    least ``min_groups`` groups but none drawn for validation gives its lowest-hash group,
    so validation covers many sources.

    Args:
        items: Items to split.
        group: Maps an item to its split group (all items of a group share a split).
        source: Maps an item to its source (package, corpus).
        percent: Approximate validation share in percent.
        min_groups: Sources with at least this many groups get a validation group.

    Returns:
        ``{"train": [...], "valid": [...]}`` in input order.
    """
    groups_by_source: dict[str, set[str]] = {}
    for item in items:
        groups_by_source.setdefault(source(item), set()).add(group(item))
    valid: set[str] = set()
    for groups in groups_by_source.values():
        chosen = {g for g in groups if stable_hash(g) % 100 < percent}
        if not chosen and len(groups) >= min_groups:
            chosen = {min(groups, key=stable_hash)}
        valid |= chosen
    return {
        "train": [it for it in items if group(it) not in valid],
        "valid": [it for it in items if group(it) in valid],
    }


def split_tracks(tracks: Sequence[Track]) -> dict[str, list[Track]]:
    """Split tracks by :func:`split_groups`; the packages of :data:`VALIDATION_ONLY` go to
    validation whole and take no part in the hashing (so the other splits do not move).

    Returns:
        ``{"train": [...], "valid": [...]}`` in input order within each part.
    """
    held = [t for t in tracks if t.package in VALIDATION_ONLY]
    splits = split_groups([t for t in tracks if t.package not in VALIDATION_ONLY],
                          group=lambda t: t.group, source=lambda t: t.source)
    return {"train": splits["train"], "valid": splits["valid"] + held}


def run(cmd: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; raises on failure."""
    return subprocess.run(list(cmd), cwd=cwd, check=True, capture_output=True, text=True)


def ensure_tools(tools: Iterable[str], apt_packages: Iterable[str], force: bool = False) -> None:
    """Install ``apt_packages`` with apt-get when any of ``tools`` is missing (or ``force``)."""
    if not force and all(shutil.which(tool) for tool in tools):
        return
    log.warning("installing %s with apt-get", " ".join(apt_packages))
    run(["apt-get", "update", "-qq"])
    run(["apt-get", "install", "-y", "-qq", *apt_packages])


def fetch_package(package: str, work_dir: Path, license_dir: Path) -> Path | None:
    """Download and unpack a package (once), copy its license; returns its unpacked folder.

    The .deb goes to ``work_dir/debs``; it is unpacked, with the music zip archives inside it
    (:data:`ARCHIVES`), into ``work_dir/unpacked/<package>``; its ``usr/share/doc/*/copyright``
    is copied to ``license_dir/<package>.copyright``.

    Returns:
        The unpacked folder, or None (with a warning) when the download fails.
    """
    deb_dir = work_dir / "debs"
    deb_dir.mkdir(parents=True, exist_ok=True)
    if not list(deb_dir.glob(f"{package}_*.deb")):
        try:
            run(["apt-get", "download", package], cwd=deb_dir)
        except (subprocess.CalledProcessError, FileNotFoundError) as err:
            log.warning("skipping %s: apt-get download failed: %s", package, err)
            return None
    found = sorted(deb_dir.glob(f"{package}_*.deb"))
    if not found:
        return None
    root = work_dir / "unpacked" / package
    if not (root / ".unpacked").exists():
        root.mkdir(parents=True, exist_ok=True)
        run(["dpkg-deb", "-x", str(found[-1]), str(root)])
        for archive in (p for name in ARCHIVES for p in root.rglob(name)):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(archive.with_suffix(".unzipped"))
        (root / ".unpacked").touch()
    licenses = sorted(root.glob("usr/share/doc/*/copyright"))
    if licenses:
        license_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(licenses[0], license_dir / f"{package}.copyright")
    else:
        log.warning("%s has no copyright file", package)
    return root


def probe_seconds(path: Path, input_options: Sequence[str] = ()) -> float:
    """Duration of an audio file in seconds by ``ffprobe`` (0 when unreadable).

    Args:
        path: The audio file.
        input_options: ffmpeg options describing a headerless file (:data:`RAW_INPUT`).
    """
    cmd = ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"]
    try:
        return float(run([*cmd, *input_options, str(path)]).stdout.strip() or 0.0)
    except (subprocess.CalledProcessError, ValueError):
        return 0.0


def package_tracks(package: str, root: Path, workers: int = 2) -> list[Track]:
    """Tracks of an unpacked package that last at least :data:`MIN_SECONDS`.

    The music files are selected by :data:`PACKAGES`; a track is named by its file stem,
    prefixed by its folder where stems collide.
    """
    pattern = re.compile(PACKAGES.get(package, ""), re.IGNORECASE)
    files = (p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    paths = sorted(p for p in files if pattern.search("/" + p.relative_to(root).as_posix()))
    stems = [sanitize(p.stem) for p in paths]
    names = [sanitize(f"{p.parent.name}_{stem}") if stems.count(stem) > 1 else stem
             for p, stem in zip(paths, stems, strict=True)]
    options = RAW_INPUT.get(package, ())
    with ThreadPoolExecutor(workers) as pool:
        seconds = list(pool.map(lambda path: probe_seconds(path, options), paths))
    tracks = [Track(package, name, path, sec)
              for path, name, sec in zip(paths, names, seconds, strict=True)]
    return [t for t in tracks if t.seconds >= MIN_SECONDS]


def convert(source: Path, target: Path, input_options: Sequence[str] = ()) -> Path | None:
    """Convert ``source`` to 16 kHz mono 16-bit wav at ``target`` (atomic, skipped if done).

    Args:
        source: Audio file ffmpeg can read (with ``input_options`` when headerless).
        target: Output wav file.
        input_options: ffmpeg options describing ``source`` (:data:`RAW_INPUT`).

    Returns:
        ``target``, or None (with a warning) when ffmpeg fails.
    """
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", *input_options, "-i", str(source), "-ac", "1"]
    cmd += ["-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "wav", str(partial)]
    try:
        run(cmd)
    except subprocess.CalledProcessError as err:
        log.warning("skipping %s: ffmpeg failed: %s", source, err.stderr.strip()[-200:])
        partial.unlink(missing_ok=True)
        return None
    partial.replace(target)
    return target


def prepare_music(data_dir: Path, work_dir: Path | None = None,
                  packages: Iterable[str] = tuple(PACKAGES), workers: int = 2,
                  ) -> dict[str, list[Track]]:
    """Build ``DATA/music/{train,valid}`` and ``DATA/licenses``; resumable.

    Args:
        data_dir: Output root (``DATA``).
        work_dir: Where packages are downloaded and unpacked (default ``DATA/_work``).
        packages: Debian packages to use.
        workers: Parallel ffmpeg processes.

    Returns:
        The tracks of each split.
    """
    data_dir = Path(data_dir)
    work_dir = Path(work_dir) if work_dir else data_dir / "_work"
    ensure_tools(["ffmpeg", "ffprobe"], ["ffmpeg"])
    tracks: list[Track] = []
    for package in tqdm(list(packages), desc="music packages", unit="pkg"):
        root = fetch_package(package, work_dir, data_dir / "licenses")
        found = [] if root is None else package_tracks(package, root)
        if root is not None and not found:
            log.warning("%s: no music found", package)
        tracks += found
    splits = split_tracks(tracks)
    jobs = [(track, data_dir / "music" / split / f"{track.package}__{track.name}.wav")
            for split, members in splits.items() for track in members]
    with ThreadPoolExecutor(workers) as pool:
        pending = [pool.submit(convert, track.path, dst, track.input_options)
                   for track, dst in jobs]
        for future in tqdm(pending, desc="music tracks", unit="track"):
            future.result()
    return splits
