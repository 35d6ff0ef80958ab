# `make test` does every set-up step itself on a fresh machine: .venv, the CPU build of torch
# (on this kind of machine a bare `torch` requirement would pull a multi-GB CUDA build),
# the project with its test extras, and the wheel that carries the PP-OCR weights.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
CRD_SCHEMAS := tests/deploy/node/node_modules/.package-lock.json

.PHONY: install lint browser deploy-tools pdf-tools test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[test]'
	# only the ONNX files inside it are used; its own dependencies (opencv-python, ...) are not needed
	$(PY) -m pip install --quiet --no-deps rapidocr==3.10.0
	touch $(STAMP)

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

test: $(STAMP) lint browser deploy-tools pdf-tools
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) bench/lifecycle.py

clean:
	rm -rf $(VENV) .pytest_cache
