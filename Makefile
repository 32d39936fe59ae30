# Two quickstart commands: `make demo` and `make test`. Both create .venv and install mlkd with
# every extra (dev = all runtime extras + the test, lint and type-check tools; docs = mkdocs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mlkd-installed
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: venv test test-quick lint format-check typecheck docs demo demo-mosaic bench fashion-mnist noto-emoji clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e ".[dev,docs]"
	# its 20 labelled ImageNet photos are the pretrained-weights test set (files only, never imported)
	$(BIN)/python -m pip install --quiet --no-deps foolbox==3.3.4
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests

# Without the tests that launch subprocesses or torchrun (marked slow).
test-quick: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" tests

# Lint (ruff check) and formatting (ruff format --check; `ruff format src tests scripts examples` fixes it).
lint: $(STAMP)
	$(BIN)/ruff check src tests scripts examples

format-check: $(STAMP)
	$(BIN)/ruff format --check src tests scripts examples

# mypy on the losses and the models ([tool.mypy] in pyproject.toml)
typecheck: $(STAMP)
	$(BIN)/mypy

# The documentation site (mkdocs.yml), warnings as errors.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

# The mosaic demo prefers real Fashion-MNIST (Debian package); it falls back to the digits packaged with mlkd.
fashion-mnist:
	@if ls $(FMNIST)/*.gz >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq dataset-fashion-mnist || \
		 (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) >/dev/null \
		|| echo "mlkd: could not install dataset-fashion-mnist; the demo will use the packaged digits"; \
	else echo "mlkd: dataset-fashion-mnist is absent and apt-get needs root; the demo will use the packaged digits (install it with: sudo apt-get install dataset-fashion-mnist)"; fi

# coco_scenes draws with OpenMoji (a pip dependency); Noto Color Emoji adds a second style.
noto-emoji:
	@if [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq fonts-noto-color-emoji || \
		 (apt-get update -qq && apt-get install -y -qq fonts-noto-color-emoji)) >/dev/null \
		|| echo "mlkd: could not install fonts-noto-color-emoji; coco_scenes will draw with OpenMoji alone"; \
	else echo "mlkd: fonts-noto-color-emoji is absent and apt-get needs root; coco_scenes will draw with OpenMoji alone (install it with: sudo apt-get install fonts-noto-color-emoji)"; fi

demo: $(STAMP) noto-emoji
	$(BIN)/mlkd demo

# The from-scratch demo: ResNet-18 -> MobileNetV2 on Fashion-MNIST mosaics.
demo-mosaic: $(STAMP) fashion-mnist
	$(BIN)/mlkd demo --data mosaic

bench: $(STAMP)
	$(BIN)/mlkd bench all

clean:
	rm -rf $(VENV) runs .pytest_cache site
