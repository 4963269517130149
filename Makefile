# The two commands of the README (`make demo`, `make test`) install everything they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# OpenCV is now its contrib build (TV-L1 flow); both packages install the same cv2 files, so a
	# .venv made before holds the plain one: remove both, and the install below puts contrib back
	if $(BIN)/python -m pip show --quiet opencv-python-headless 2>/dev/null; then \
		$(BIN)/python -m pip uninstall --quiet -y opencv-python-headless opencv-contrib-python-headless; fi
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/crossdistill reproduce demo --out outputs/demo

test: install
	$(BIN)/python -m pytest

# the unit lane (seconds): objectives, metrics, models, annotation readers, sampling, recipes
FAST_TESTS := tests/distillation tests/metrics tests/models tests/test_annotations_formats.py \
	tests/test_annotations_realdata.py tests/test_sampling.py tests/test_held_out_split.py \
	tests/test_reproduce.py
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" $(FAST_TESTS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) outputs data/synthetic data/synthetic.frame_store .pytest_cache
