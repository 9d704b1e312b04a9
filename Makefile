# Set-up is part of every target: a fresh machine needs only Python 3.10+ and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --constraint constraints.txt
STAMP := $(VENV)/.installed

.PHONY: demo test studio lint data train clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(PIP) --quiet torch==2.13.0
	$(PIP) --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps musicnn==0.1.0  # TF1 checkpoints for FAD-musicnn; read without TensorFlow
	$(BIN)/python -m diffmusic.studio.assets  # the studio's waveform component, from npm, once
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/diffmusic demo -o demo_out

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	chromium=$$(tools/chromium.sh $(VENV)/chromium) && DIFFMUSIC_CHROMIUM=$$chromium $(BIN)/pytest

studio: $(STAMP)
	$(BIN)/diffmusic studio

train: $(STAMP)
	$(BIN)/python -m diffmusic.train all --data data --runs runs

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

data: $(STAMP)
	@command -v ffmpeg >/dev/null && command -v fluidsynth >/dev/null \
		&& test -f /usr/share/sounds/sf2/FluidR3_GM.sf2 \
		|| (apt-get update && apt-get install -y ffmpeg fluidsynth fluid-soundfont-gm)
	$(BIN)/python -c "import pretty_midi, fluidsynth, music21" 2>/dev/null \
		|| $(PIP) --quiet -e '.[train]'
	$(BIN)/python -m diffmusic.data --out data

clean:
	rm -rf $(VENV) demo_out
