"""docker-compose.gpu.yml, Dockerfile, .dockerignore and .env.example, checked by reading them
(no Docker engine is needed; where a compose binary exists it validates the file too)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.gpu.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?-([^}]*))?\}")
# DeepSeek-OCR-2's weights in bf16; they must fit in the container's /dev/shm
DEEPSEEK_BYTES = 6.7e9


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR:-default}`` substitution, enough for this file."""
    if isinstance(value, str):
        return VARIABLE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def size_bytes(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?", text.strip().lower())
    assert match, text
    return float(match.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[match.group(2)]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def service(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]["deepseek-ocr-gpu"]


def test_service_and_container_are_named_as_upstream(service: dict[str, Any]) -> None:
    assert interpolate(service["container_name"], {}) == "deepseek-ocr-gpu"
    assert service["build"]["dockerfile"] == "Dockerfile"
    assert service["restart"] in ("unless-stopped", "always")


def test_port_comes_from_env_and_binds_loopback_unless_host_is_set(service: dict[str, Any]) -> None:
    assert [interpolate(p, {}) for p in service["ports"]] == ["127.0.0.1:8001:8001"]
    assert [interpolate(p, {"PORT": "8002", "HOST": "0.0.0.0"}) for p in service["ports"]] == ["0.0.0.0:8002:8002"]
    assert interpolate(service["environment"]["PORT"], {"PORT": "8002"}) == "8002"


def test_the_chosen_gpu_is_reserved_through_the_nvidia_driver(service: dict[str, Any]) -> None:
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert interpolate(device["device_ids"], {"NVIDIA_VISIBLE_DEVICES": "2"}) == ["2"]
    assert interpolate(device["device_ids"], {}) == ["0"]
    # Docker's own device request sets NVIDIA_VISIBLE_DEVICES inside; setting it too could widen it
    assert "NVIDIA_VISIBLE_DEVICES" not in service["environment"]


def test_shared_memory_holds_the_largest_model(service: dict[str, Any]) -> None:
    assert "SHM_SIZE" in service["shm_size"]
    assert size_bytes(interpolate(service["shm_size"], {})) > DEEPSEEK_BYTES
    assert interpolate(service["shm_size"], {"SHM_SIZE": "16g"}) == "16g"


def test_model_cache_is_a_volume_and_settings_come_from_env(compose: dict[str, Any], service: dict[str, Any]) -> None:
    env = service["environment"]
    for name in ("GPU_IDLE_TIMEOUT", "DSOCR_MODEL", "PORT"):
        assert VARIABLE.search(str(env[name])), name
    assert env["HF_HOME"].startswith("/cache/") and env["DSOCR_CACHE_DIR"].startswith("/cache/")
    volume, target = service["volumes"][0].split(":")[:2]
    assert target == "/cache" and volume in compose["volumes"]


def test_healthcheck_asks_health_with_a_tool_the_image_has(service: dict[str, Any]) -> None:
    check = service["healthcheck"]
    command = " ".join(check["test"])
    assert "/health" in command and check["test"][1] == "python"
    assert check.get("start_period") and check.get("interval")


def test_every_variable_has_a_default_and_is_in_env_example(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    example = env_example()
    for match in VARIABLE.finditer(text):
        name, default = match.groups()
        assert default is not None or name in example, f"${{{name}}} has no default"
        if name not in ("DSOCR_API_KEY", "HF_TOKEN"):  # secrets belong in the shell
            assert name in example, f"{name} is missing from .env.example"
    assert example["DSOCR_API_KEY"] == ""


def test_start_script_writes_what_compose_reads() -> None:
    script = (ROOT / "start_gpu.sh").read_text()
    written = re.search(r'cat >"\$env_file" <<EOF\n(.*?)\nEOF', script, re.DOTALL)
    assert written is not None
    keys = {line.split("=", 1)[0] for line in written.group(1).splitlines() if "=" in line and not line.startswith("#")}
    assert {"PORT", "NVIDIA_VISIBLE_DEVICES", "GPU_IDLE_TIMEOUT", "DSOCR_MODEL"} <= keys
    used = {m.group(1) for m in VARIABLE.finditer(COMPOSE.read_text())}
    assert keys <= used, keys - used


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dockerfile_base_is_pinned_and_user_is_not_root() -> None:
    instructions = dockerfile_instructions()
    froms = [args for op, args in instructions if op == "FROM"]
    assert froms
    for image in froms:
        name, _, tag = image.split()[0].partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), image
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    users = [args for op, args in instructions[last_from:] if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_installs_the_project_and_serves_on_all_interfaces() -> None:
    instructions = dockerfile_instructions()
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert "rapidocr==3.10.0" in runs and "--no-deps" in runs
    assert any(op == "EXPOSE" and "8001" in args for op, args in instructions)
    assert any(op == "HEALTHCHECK" and "/health" in args for op, args in instructions)
    start = " ".join(args for op, args in instructions if op in ("ENTRYPOINT", "CMD"))
    assert "serve" in start and "0.0.0.0" in start
    env = " ".join(args for op, args in instructions if op in ("ENV", "ARG"))
    assert "DSOCR_IN_CONTAINER=1" in env  # gpus.py: the runtime already applied NVIDIA_VISIBLE_DEVICES
    assert not re.search(r"(KEY|TOKEN|PASSWORD|SECRET)\w*=\S", env), "no secrets in the image"


def test_dockerfile_copies_every_package_and_dockerignore_keeps_them() -> None:
    instructions = dockerfile_instructions()
    copied = {source for op, args in instructions if op == "COPY" for source in args.split()[:-1]}
    assert {"pyproject.toml", "README.md", "supervisor", "engine", "ipc"} <= copied
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}  # fmt: skip
    assert {".venv", ".git", ".env"} <= ignored
    assert not ({"supervisor", "engine", "ipc", "README.md", "pyproject.toml"} & ignored)
    for path in ("pyproject.toml", "README.md", "supervisor", "engine", "ipc"):
        assert (ROOT / path).exists(), path


def compose_binary() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.skipif(compose_binary() is None, reason="needs docker compose (or docker-compose) to validate")
def test_compose_validates_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text(ENV_EXAMPLE.read_text().replace("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_VISIBLE_DEVICES=3"))
    binary = compose_binary()
    assert binary
    out = subprocess.run(
        [*binary, "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )  # no PORT, HOST... from here
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)["services"]["deepseek-ocr-gpu"]
    assert resolved["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["3"]
    assert resolved["container_name"] == "deepseek-ocr-gpu"
