"""bench/vlm_gpu.py, the one-command GPU check of the tiny VLMs: it refuses a host without CUDA
with exit status 2 and says why, and its CPU smoke run serves a tiny VLM and compares batches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(240)


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "bench/vlm_gpu.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=200)  # fmt: skip


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
def test_without_cuda_it_stops_at_once_and_says_why() -> None:
    out = run("--device", "cuda")
    assert out.returncode == 2 and "no CUDA device" in out.stderr and "--device cpu" in out.stderr


def test_cpu_smoke_run_serves_a_tiny_vlm_and_compares_batches() -> None:
    out = run("--device", "cpu", "--models", "glm-ocr-tiny", "--pages", "3", "--max-tokens", "4", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    result = orjson.loads(out.stdout.strip().splitlines()[-1])
    glm = result["models"]["glm-ocr"]
    assert result["ok"] and glm["same_as_sequential"] and glm["status"]["state"] == "resident"
    assert "glm-ocr" in glm["status"]["segment"]
