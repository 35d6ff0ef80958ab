"""The shell scripts a user runs first: test_gpu_management.sh against real servers, start_gpu.sh
in local mode for real and in Docker mode against stand-ins for docker and nvidia-smi."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from tests.integration.server import free_port, running_server, segments_of, wait_until

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "start_gpu.sh"
CHECK = ROOT / "test_gpu_management.sh"


def run(*cmd: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck (apt-get install shellcheck)")
def test_scripts_pass_shellcheck() -> None:
    out = run("shellcheck", str(START), str(CHECK))
    assert out.returncode == 0, out.stdout


def test_scripts_are_executable_bash_with_strict_mode() -> None:
    for script in (START, CHECK):
        text = script.read_text()
        assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
        assert script.stat().st_mode & stat.S_IXUSR


# -- test_gpu_management.sh ----------------------------------------------------------------------


def test_gpu_management_walks_every_state_of_a_real_server() -> None:
    with running_server("--idle-timeout", "0") as server:
        out = run(str(CHECK), "--url", server.url, env={"NO_COLOR": "1"})
        assert out.returncode == 0, out.stdout + out.stderr
        assert "All" in out.stdout and "checks passed" in out.stdout
        for step in ("ppocr is unloaded", "ppocr is resident on the cpu", "ppocr is cached on the cpu",
                     'the text contains "sample 42"', "no engine, no shared memory, no GPU memory"):  # fmt: skip
            assert step in out.stdout, step
        assert "\x1b[" not in out.stdout  # no colours when not on a terminal
        # the batch is a count of pages, not seconds
        assert re.search(r"server: .*\bbatch 1\b", out.stdout) and not re.search(r"batch [\d.]+s", out.stdout)
        assert segments_of(server.pid) == []  # it ends released


def test_gpu_management_names_a_model_and_fails_on_one_the_server_lacks() -> None:
    with running_server("--idle-timeout", "0") as server:
        out = run(str(CHECK), "--url", server.url, "--model", "nope")
        assert out.returncode == 1 and "does not run model nope; it runs: ppocr" in out.stderr


def test_gpu_management_fails_on_the_first_check_that_does_not_hold(tmp_path: Path) -> None:
    with running_server("--idle-timeout", "0") as server:
        out = run(str(CHECK), "--url", server.url, "--expect", "words that are not there")
        assert out.returncode == 1
        assert 'the text contains "words that are not there" does not hold' in out.stderr
        assert "FAILED after" in out.stderr and "Offload" not in out.stdout


def test_gpu_management_exits_2_where_nothing_listens() -> None:
    out = run(str(CHECK), "--url", f"http://127.0.0.1:{free_port()}", timeout=30)
    assert out.returncode == 2
    assert "no dsocr server answers" in out.stderr and "Traceback" not in out.stderr


def test_gpu_management_rejects_unknown_arguments() -> None:
    out = run(str(CHECK), "--nope", timeout=30)
    assert out.returncode == 64 and "Usage" in out.stderr


# -- start_gpu.sh, local mode, for real -------------------------------------------------------


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "dsocr").exists(), reason="needs the local install (make install)")
def test_start_script_runs_the_local_install_in_the_foreground(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "start.log").open("w+")
    proc = subprocess.Popen([str(START)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PORT": str(port), "DSOCR_MODE": "local", "NO_COLOR": "1"})  # fmt: skip

    def up() -> bool:
        assert proc.poll() is None, Path(log.name).read_text()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        return False

    try:
        assert wait_until(up, 60), Path(log.name).read_text()
        text = Path(log.name).read_text()
        assert "🚀 DeepSeek-OCR with GPU Management" in text
        assert f"Local:  http://127.0.0.1:{port}" in text
        assert "not served (bound to 127.0.0.1" in text  # no HOST: this machine only
        # exec: the script's process is the service itself, so signals reach it
        assert "dsocr serve" in " ".join(Path(f"/proc/{proc.pid}/cmdline").read_text().split("\0"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        log.close()


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "dsocr").exists(), reason="needs the local install (make install)")
def test_start_script_refuses_a_port_in_use() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        out = run(str(START), env={"PORT": str(port), "DSOCR_MODE": "local"}, timeout=60)
    assert out.returncode == 1
    assert f"port {port} is already in use" in out.stderr and f"PORT={port + 1} ./start_gpu.sh" in out.stderr


# -- start_gpu.sh, Docker mode, with stand-ins ------------------------------------------------

NVIDIA_SMI = """#!/bin/sh
case "$*" in
  *driver_version*) echo "550.54.15" ;;
  *index,name,memory.used,memory.total*)
    echo "0, NVIDIA L40S, 22331, 46068"
    echo "1, NVIDIA L40S, 433, 46068"
    echo "2, NVIDIA L40S, 3, 46068" ;;
  *) exit 1 ;;
esac
"""
DOCKER = """#!/bin/sh
echo "docker $*" >> "$DOCKER_LOG"
case "$1" in
  info) echo "io.containerd.runc.v2 nvidia runc " ;;
  compose) exit 0 ;;
  *) exit 1 ;;
esac
"""


DockerHost = tuple[Path, dict[str, str]]


@pytest.fixture
def docker_host(tmp_path: Path) -> DockerHost:
    """A copy of the script (it writes .env next to itself) and a PATH with fake docker and nvidia-smi."""
    work, bin_dir = tmp_path / "work", tmp_path / "bin"
    work.mkdir()
    bin_dir.mkdir()
    for name in ("start_gpu.sh", "docker-compose.gpu.yml"):
        shutil.copy2(ROOT / name, work / name)
    for name, body in (("nvidia-smi", NVIDIA_SMI), ("docker", DOCKER)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKER_LOG": str(tmp_path / "docker.log"),
           "START_WAIT_S": "0", "NO_COLOR": "1"}  # fmt: skip
    for name in ("PORT", "HOST", "NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "DSOCR_MODE"):
        env[name] = ""
    return work, env


def env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def test_start_script_in_docker_mode_picks_the_least_used_gpu_and_starts_compose(docker_host: DockerHost) -> None:
    work, env = docker_host
    out = run(str(work / "start_gpu.sh"), env={**env, "PORT": "", "HOST": ""}, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "🚀 DeepSeek-OCR with GPU Management" in out.stdout and "Docker with the NVIDIA runtime" in out.stdout
    assert "2, NVIDIA L40S, 3 MiB, 46068 MiB  ← 自动选择 (selected)" in out.stdout
    assert "Selected GPU 2: NVIDIA L40S" in out.stdout
    written = env_file(work / ".env")
    assert written["PORT"] == "8001" and written["NVIDIA_VISIBLE_DEVICES"] == "2"
    assert written["GPU_IDLE_TIMEOUT"] == "60" and written["DSOCR_MODEL"] == "ppocr" and written["HOST"] == "127.0.0.1"
    calls = Path(env["DOCKER_LOG"]).read_text()
    assert "docker compose --env-file .env -p deepseek-ocr-gpu -f docker-compose.gpu.yml up -d" in calls


def test_start_script_second_instance_on_another_gpu_and_port(docker_host: DockerHost) -> None:
    work, env = docker_host
    out = run(str(work / "start_gpu.sh"), env={**env, "PORT": "8002", "NVIDIA_VISIBLE_DEVICES": "0,1",
                                                "GPU_IDLE_TIMEOUT": "30", "HOST": "0.0.0.0"}, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1, NVIDIA L40S, 433 MiB, 46068 MiB  ← 自动选择 (selected)" in out.stdout
    assert "2, NVIDIA L40S" not in out.stdout
    written = env_file(work / ".env.8002")
    assert (written["NVIDIA_VISIBLE_DEVICES"], written["PORT"], written["GPU_IDLE_TIMEOUT"]) == ("1", "8002", "30")
    assert written["DSOCR_CONTAINER_NAME"] == "deepseek-ocr-gpu-8002"
    assert not (work / ".env").exists()  # the first instance's settings stay as they were
    assert "-p deepseek-ocr-gpu-8002 -f docker-compose.gpu.yml up -d" in Path(env["DOCKER_LOG"]).read_text()
    assert "Local:  http://127.0.0.1:8002" in out.stdout


def test_start_script_says_why_it_does_not_use_docker(docker_host: DockerHost) -> None:
    work, env = docker_host
    (Path(env["PATH"].split(":")[0]) / "docker").write_text("#!/bin/sh\nexit 1\n")
    out = run(str(work / "start_gpu.sh"), env={**env, "DSOCR_MODE": "docker"}, timeout=60)
    assert out.returncode == 1
    assert "DSOCR_MODE=docker, but no Docker engine answers" in out.stderr
