"""Tuned sampler defaults: restore reads them, explicit arguments win, shipped files are whole."""

import json
from pathlib import Path

import pytest
from signals import music_like
from torch import Tensor

from diffmusic.operators import TASKS, Inpainting
from diffmusic.priors import DEFAULT_PRIOR
from diffmusic.restoration import Settings, restore
from diffmusic.restoration.settings import SettingError
from diffmusic.restoration.tuned import ENV_VAR, TUNED_DIR, load_tuned
from diffmusic.samplers import RHO

pytestmark = pytest.mark.usefixtures("one_thread")
RATE, N = 16000, 20480


def _write_tuned(path: Path, prior: str, rho: float) -> Path:
    path.write_text(json.dumps({"prior": prior, "split": "valid-split", "metric": "lsd",
                                "per_task": {"inpainting": {"diffmusic": {"rho": rho}}}}))
    return path


def _rho(tiny, **kwargs) -> tuple[float, dict | None]:
    op = Inpainting(RATE, N, [(0.5, 0.7)])
    rec = restore(tiny, op, op(music_like(2, N)[None]), Settings(steps=2, **kwargs)).record
    return rec["settings"].get("rho"), rec["tuned_defaults"]


def test_restore_takes_the_step_size_from_the_tuned_file(tiny, tmp_path, monkeypatch):
    path = _write_tuned(tmp_path / "tuned.json", "tiny", 0.42)
    monkeypatch.setenv(ENV_VAR, str(path))
    assert _rho(tiny) == (0.42, {"file": str(path), "split": "valid-split"})
    assert _rho(tiny, step=0.07)[0] == 0.07  # an explicit argument wins
    assert _rho(tiny, gamma=7.0)[0] is None  # the paper's plain step replaces the tuned one
    assert _rho(tiny, tuned=False) == (RHO, None)
    monkeypatch.delenv(ENV_VAR)
    assert _rho(tiny, tuned=path)[0] == 0.42


def _tuned_inpainting(folder: Path, choice: dict) -> tuple[Path, Inpainting, Tensor]:
    """A tuned file with DiffMusic's inpainting ``choice``, the operator and a measurement."""
    path = folder / "tuned.json"
    path.write_text(json.dumps({"prior": "tiny", "per_task": {
        "inpainting": {"diffmusic": choice}}}))
    op = Inpainting(RATE, N, [(0.5, 0.7)])
    return path, op, op(music_like(2, N)[None])


def test_restore_takes_the_guidance_scale_from_the_tuned_file(tiny, tmp_path):
    path, op, y = _tuned_inpainting(tmp_path, {"rho": 0.2, "guidance_scale": 2.5})

    def settings(**kwargs) -> tuple[float, dict]:
        rec = restore(tiny, op, y, Settings(steps=2, **{"tuned": path, **kwargs})).record
        return rec["guidance_scale"], rec["settings"]

    scale, sampler_settings = settings()
    assert scale == 2.5 and sampler_settings["rho"] == 0.2  # not passed on to the sampler
    assert settings(guidance_scale=1.0)[0] == 1.0  # an explicit scale wins
    assert settings(tuned=False)[0] == 1.0


def test_auto_takes_the_tuned_sampler_of_the_task(tiny, tmp_path):
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps({"prior": "tiny", "default_sampler": {"inpainting": "dps"},
                                "per_task": {"inpainting": {"dps": {"zeta": 0.3}}}}))
    op = Inpainting(RATE, N, [(0.5, 0.7)])
    y = op(music_like(2, N)[None])

    def record(**kwargs) -> dict:
        return restore(tiny, op, y, Settings(steps=2, **{"tuned": path, **kwargs})).record

    auto = record()
    assert (auto["sampler"], auto["sampler_choice"], auto["settings"]["zeta"]) == (
        "dps", "auto", 0.3)
    assert record(step=0.5)["settings"]["zeta"] == 0.5  # the step of the chosen sampler
    assert record(sampler="dsg")["sampler"] == "dsg"  # an explicit sampler wins
    assert record(tuned=False)["sampler"] == "diffmusic"  # nothing chosen: diffmusic
    with pytest.raises(SettingError, match="^gamma"):
        record(gamma=3.0)  # the plain step of diffmusic, but auto chose dps


def test_a_file_tuned_for_another_prior_is_refused(tiny, tmp_path):
    path = _write_tuned(tmp_path / "tuned.json", "embedded", 1.0)
    with pytest.raises(ValueError, match="tuned for the embedded prior"):
        _rho(tiny, tuned=path)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a tuned-defaults file"):
        load_tuned("tiny", tmp_path / "bad.json")


def test_a_changed_file_is_read_again(tmp_path):
    path = _write_tuned(tmp_path / "tuned.json", "tiny", 1.0)
    assert load_tuned("tiny", path).kwargs("inpainting", "diffmusic") == {"rho": 1.0}
    _write_tuned(path, "tiny", 2.0)
    assert load_tuned("tiny", path).kwargs("inpainting", "diffmusic") == {"rho": 2.0}


def test_the_default_prior_ships_tuned_defaults():
    assert (TUNED_DIR / f"{DEFAULT_PRIOR}.json").is_file()


@pytest.mark.parametrize("shipped", sorted(TUNED_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_shipped_defaults_cover_every_task_and_guided_sampler(shipped: Path):
    tuned = load_tuned(shipped.stem)
    assert tuned.file == str(shipped) and tuned.prior == shipped.stem and tuned.split
    assert set(tuned.per_task) == set(TASKS)
    for task in TASKS:
        assert set(tuned.per_task[task]) == {"diffmusic", "mpgd", "dps", "dsg"}, task
        for values in tuned.per_task[task].values():
            assert all(v > 0 for v in values.values())


def test_restore_warm_starts_from_the_baseline_at_the_tuned_strength(tiny, tmp_path):
    path, op, y = _tuned_inpainting(tmp_path, {"rho": 0.2, "warm_start": 0.5})

    def run(**kwargs) -> tuple[int, dict]:
        seen = []
        rec = restore(tiny, op, y, Settings(steps=6, tuned=path, **kwargs), seen.append).record
        return len(seen), rec["settings"]

    steps, settings = run()
    assert steps == 3 and settings["warm_start"] == 0.5 and settings["rho"] == 0.2
    steps, settings = run(warm_start=1.0)  # an explicit strength wins; 1 starts from noise
    assert steps == 6 and "warm_start" not in settings
    with pytest.raises(ValueError, match="warm_start"):
        run(warm_start=1.5)  # not silently read as "from noise"


@pytest.mark.parametrize(("sampler", "keyword"), [("diffmusic", "rho"), ("mpgd", "gamma"),
                                                  ("dps", "zeta"), ("dsg", "guidance_rate")])
def test_step_is_each_samplers_own_step_size_keyword(sampler: str, keyword: str) -> None:
    settings = Settings(sampler=sampler, step=5.0, eta=0.5)
    assert settings.explicit() == {keyword: 5.0, "eta": 0.5}
    assert Settings.from_keywords(sampler, settings.explicit()) == settings
    resolved = settings.resolve("tiny", "inpainting")
    assert resolved.kwargs[keyword] == 5.0


def test_the_paper_plain_step_and_the_normalised_one_both_reach_diffmusic() -> None:
    settings = Settings(sampler="diffmusic", step=0.2, gamma=7.0)
    assert settings.explicit() == {"rho": 0.2, "gamma": 7.0}
    with pytest.raises(ValueError, match="^gamma "):
        Settings(sampler="mpgd", gamma=7.0)
