#!/usr/bin/env bash
# Starts dsocr. Checks the environment, lists the GPUs and marks the least used one, then runs the
# service in Docker where the NVIDIA container runtime is present, otherwise from the local install
# (.venv, made with `make install` on first use) in the foreground: on the CPU with the embedded
# model when there is no GPU.
#
# Settings (environment variables):
#   PORT=8001                port to serve on
#   HOST=127.0.0.1           address to bind; HOST=0.0.0.0 serves the LAN too
#   NVIDIA_VISIBLE_DEVICES   GPUs to choose from (default: all); the least used one is taken
#   GPU_IDLE_TIMEOUT=60      idle seconds before the model leaves the GPU
#   DSOCR_MODEL=ppocr        model to serve (ppocr, deepseek-ocr-2)
#   DSOCR_MODE=auto          auto | docker | local
#   SHM_SIZE=8g              Docker: the container's /dev/shm, which holds the model's weights
#   START_WAIT_S=120         Docker: seconds to wait for /health after the container starts
# Arguments go to `dsocr serve` in local mode, e.g. ./start_gpu.sh --log-level DEBUG
# A second instance on another GPU: PORT=8002 NVIDIA_VISIBLE_DEVICES=1 ./start_gpu.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

PORT=${PORT:-8001}
HOST=${HOST:-127.0.0.1}
GPU_IDLE_TIMEOUT=${GPU_IDLE_TIMEOUT:-60}
DSOCR_MODEL=${DSOCR_MODEL:-ppocr}
DSOCR_MODE=${DSOCR_MODE:-auto}
SHM_SIZE=${SHM_SIZE:-8g}
START_WAIT_S=${START_WAIT_S:-120}
VENV=.venv
COMPOSE_FILE=docker-compose.gpu.yml

if [[ -t 1 && -z ${NO_COLOR:-} ]]; then
    green=$'\e[32m' yellow=$'\e[33m' red=$'\e[31m' bold=$'\e[1m' dim=$'\e[2m' reset=$'\e[0m'
else
    green="" yellow="" red="" bold="" dim="" reset=""
fi
rule() { printf '%s==================================================%s\n' "$bold" "$reset"; }
heading() { printf '\n%s%s%s\n' "$bold" "$*" "$reset"; }
ok() { printf '%s✅ %s%s\n' "$green" "$*" "$reset"; }
warn() { printf '%s⚠️  %s%s\n' "$yellow" "$*" "$reset"; }
note() { printf '   %s%s%s\n' "$dim" "$*" "$reset"; }
die() {
    printf '%s❌ %s%s\n' "$red" "$*" "$reset" >&2
    exit 1
}

if [[ $PORT =~ [^0-9] || $PORT -lt 1 || $PORT -gt 65535 ]]; then
    die "PORT=$PORT is not a port number"
fi
case $DSOCR_MODE in auto | docker | local) ;; *) die "DSOCR_MODE=$DSOCR_MODE: use auto, docker or local" ;; esac

rule
printf '%s🚀 DeepSeek-OCR with GPU Management%s  %s(dsocr)%s\n' "$bold" "$reset" "$dim" "$reset"
rule

# -- environment --------------------------------------------------------------------------------

heading "🔎 Environment"
note "system:  $(uname -sm)"

driver=""
if command -v nvidia-smi >/dev/null && driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1) && [[ -n $driver ]]; then
    ok "NVIDIA driver $driver"
else
    driver=""
    note "NVIDIA driver: none (nvidia-smi not found or no GPU answers): the service runs on the CPU"
fi

docker_ready=false
docker_why=""
# shellcheck disable=SC2016 # a Go template for docker info, not a shell expansion
runtimes_template='{{range $k, $v := .Runtimes}}{{$k}} {{end}}'
compose=()
if ! command -v docker >/dev/null; then
    docker_why="Docker is not installed"
elif ! runtimes=$(timeout 20 docker info --format "$runtimes_template" 2>/dev/null); then
    docker_why="no Docker engine answers (the docker client is installed)"
elif [[ " $runtimes " != *" nvidia "* ]]; then
    docker_why="Docker has no NVIDIA runtime (install the NVIDIA Container Toolkit)"
elif [[ -z $driver ]]; then
    docker_why="Docker has the NVIDIA runtime but no GPU answers"
elif docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
else
    docker_why="Docker Compose is not installed (the docker compose plugin)"
fi
if ((${#compose[@]})); then
    docker_ready=true
    ok "Docker with the NVIDIA runtime"
else
    note "Docker: $docker_why"
fi

shm_free_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
note "shared memory: $((${shm_free_kb:-0} / 1024)) MiB free in /dev/shm"

case $DSOCR_MODE in
    docker) $docker_ready || die "DSOCR_MODE=docker, but $docker_why" ;;
    auto) if $docker_ready; then DSOCR_MODE=docker; else DSOCR_MODE=local; fi ;;
esac

lan_ip() {
    local ip=""
    if command -v hostname >/dev/null; then
        ip=$(hostname -I 2>/dev/null | awk '{print $1}') || ip=""
    fi
    if [[ -z $ip ]] && command -v ip >/dev/null; then
        ip=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p') || ip=""
    fi
    printf '%s' "$ip"
}

print_urls() {
    local lan
    lan=$(lan_ip)
    heading "📍 Access URLs"
    echo "   - Local:  http://127.0.0.1:$PORT"
    case $HOST in
        0.0.0.0 | :: | "$lan")
            if [[ -n $lan ]]; then
                echo "   - Remote: http://$lan:$PORT"
            else
                note "Remote: no LAN address found"
            fi
            ;;
        127.* | localhost | ::1)
            note "Remote: not served (bound to $HOST; HOST=0.0.0.0 ./start_gpu.sh serves the LAN)"
            ;;
        *) echo "   - Remote: http://$HOST:$PORT" ;;
    esac
}

# -- GPUs ---------------------------------------------------------------------------------------

gpu_index="" gpu_name="" gpu_used="" gpu_total="" gpu_device=""

# The host's view, in nvidia-smi's own words (Docker mode: the venv may not exist yet).
gpus_from_nvidia_smi() {
    local rows visible
    rows=$(nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv,noheader,nounits) || return 1
    visible=${NVIDIA_VISIBLE_DEVICES:-all}
    if [[ $visible =~ ^[0-9]+(,[0-9]+)*$ ]]; then
        rows=$(awk -F', *' -v keep=",$visible," 'index(keep, "," $1 ",")' <<<"$rows")
    fi
    [[ -n $rows ]] || return 1
    # least used first, ties: most free, then lowest index
    read -r gpu_index <<<"$(awk -F', *' '{print $1, $3, $4 - $3}' <<<"$rows" | sort -k2,2n -k3,3nr -k1,1n | head -1 | cut -d' ' -f1)"
    while IFS=, read -r index name used total; do
        name=${name# } used=${used# } total=${total# }
        if [[ $index == "$gpu_index" ]]; then
            gpu_name=$name gpu_used=$used gpu_total=$total
            printf '%s%s, %s, %s MiB, %s MiB  ← 自动选择 (selected)%s\n' "$green" "$index" "$name" "$used" "$total" "$reset"
        else
            printf '%s, %s, %s MiB, %s MiB\n' "$index" "$name" "$used" "$total"
        fi
    done <<<"$rows"
    gpu_device=cuda:$gpu_index
}

# The service's own view (`dsocr gpus`: NVML, honours CUDA_/NVIDIA_VISIBLE_DEVICES).
gpus_from_dsocr() {
    local listing fields rc=0
    listing=$("$VENV/bin/dsocr" gpus 2>&1) || rc=$?
    if ((rc != 0)); then
        note "$listing"
        return 1
    fi
    printf '%s\n' "$listing" | sed "s/.*← .*/$green&$reset/"
    fields=$("$VENV/bin/dsocr" gpus --json | "$VENV/bin/python" -c '
import json, sys
d = json.load(sys.stdin)
g = next(g for g in d["gpus"] if g["selected"])
print("\t".join(str(v) for v in (g["index"], g["name"], g["used_mib"], g["total_mib"], d["device"])))
')
    IFS=$'\t' read -r gpu_index gpu_name gpu_used gpu_total gpu_device <<<"$fields"
}

show_choice() {
    echo
    ok "Selected GPU $gpu_index: $gpu_name"
    note "Memory: ${gpu_used} MiB / ${gpu_total} MiB used"
}

# -- Docker -------------------------------------------------------------------------------------

run_docker() {
    local env_file=.env project=deepseek-ocr-gpu health="" waited=0
    if [[ $PORT != 8001 ]]; then
        # a second instance keeps its own settings and container
        env_file=.env.$PORT project=deepseek-ocr-gpu-$PORT
    fi
    heading "🔍 Detecting available GPUs..."
    gpus_from_nvidia_smi || die "nvidia-smi lists no GPU${NVIDIA_VISIBLE_DEVICES:+ among NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES}"
    show_choice

    cat >"$env_file" <<EOF
# Written by start_gpu.sh; docker compose reads it (docker-compose.gpu.yml).
PORT=$PORT
HOST=$HOST
NVIDIA_VISIBLE_DEVICES=$gpu_index
GPU_IDLE_TIMEOUT=$GPU_IDLE_TIMEOUT
DSOCR_MODEL=$DSOCR_MODEL
SHM_SIZE=$SHM_SIZE
DSOCR_CONTAINER_NAME=$project
EOF
    heading "📝 Wrote $env_file"
    sed 's/^/   /' "$env_file" | grep -v '^   #'

    heading "🐳 Starting the container (the first start builds the image)..."
    local cmd=("${compose[@]}" --env-file "$env_file" -p "$project" -f "$COMPOSE_FILE")
    "${cmd[@]}" up -d || die "docker compose could not start the service (see above)"

    printf '   waiting for http://127.0.0.1:%s/health ' "$PORT"
    while ((waited < START_WAIT_S)); do
        if health=$(curl -fsS --max-time 2 "http://127.0.0.1:$PORT/health" 2>/dev/null); then
            break
        fi
        health=""
        sleep 1
        waited=$((waited + 1))
        printf '.'
    done
    echo
    if [[ -n $health ]]; then
        ok "Service started (container $project)"
    else
        warn "no answer on /health after ${START_WAIT_S}s: see docker logs -f $project"
    fi
    print_urls
    heading "📊 GPU"
    echo "   - Selected GPU: $gpu_index ($gpu_name)"
    echo "   - Idle timeout: $GPU_IDLE_TIMEOUT seconds"
    heading "🔧 Management"
    echo "   - Logs:         docker logs -f $project"
    echo "   - Stop:         ${cmd[*]} down"
    echo "   - GPU status:   curl http://127.0.0.1:$PORT/gpu/status"
    echo "   - Offload GPU:  curl -X POST http://127.0.0.1:$PORT/gpu/offload"
    echo "   - Check:        ./test_gpu_management.sh --url http://127.0.0.1:$PORT"
    rule
}

# -- local install ------------------------------------------------------------------------------

ensure_venv() {
    if [[ -x $VENV/bin/dsocr ]]; then
        return
    fi
    command -v make >/dev/null || die "make is needed to install dsocr into $VENV (apt-get install make)"
    command -v python3 >/dev/null || die "python3 (3.10 or newer) is needed"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
        die "python3 is $(python3 -V 2>&1 | cut -d' ' -f2); dsocr needs 3.10 or newer"
    python3 -c 'import venv, ensurepip' 2>/dev/null ||
        die "python3 cannot make virtual environments (apt-get install python3-venv)"
    heading "📦 First run: installing dsocr into $VENV (torch and the model files; a few minutes)..."
    make install || die "make install failed (see above); fix it and run ./start_gpu.sh again"
    ok "Installed into $VENV"
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

run_local() {
    local device=cpu
    heading "💻 Running from the local install: ${docker_why:-DSOCR_MODE=local}"
    ensure_venv

    heading "🔍 Detecting available GPUs..."
    if gpus_from_dsocr; then
        show_choice
        device=$gpu_device
        if ! "$VENV/bin/python" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
            warn "the torch in $VENV has no CUDA (a CPU build?): running on the CPU"
            device=cpu
        fi
    fi
    if [[ $device == cpu ]]; then
        note "Device: CPU"
        if [[ $DSOCR_MODEL == deepseek-ocr-2 ]]; then
            warn "deepseek-ocr-2 on a CPU is very slow; DSOCR_MODEL=ppocr is the embedded CPU model"
        fi
    fi
    if [[ $DSOCR_MODEL == deepseek-ocr-2 && ${shm_free_kb:-0} -lt $((7 * 1024 * 1024)) ]]; then
        warn "deepseek-ocr-2 keeps ~6.7 GB of weights in /dev/shm; only $((${shm_free_kb:-0} / 1024)) MiB free"
    fi

    if port_in_use; then
        die "port $PORT is already in use (another dsocr?); PORT=$((PORT + 1)) ./start_gpu.sh runs a second instance"
    fi
    if [[ $HOST != 127.* && $HOST != localhost && $HOST != ::1 ]]; then
        warn "Binding $HOST: the service is reachable from the network"
    fi
    print_urls
    heading "🔧 Management"
    echo "   - Stop:         Ctrl-C"
    echo "   - GPU status:   $VENV/bin/dsocr status --url http://127.0.0.1:$PORT"
    echo "   - Offload GPU:  $VENV/bin/dsocr offload --url http://127.0.0.1:$PORT"
    echo "   - Check:        ./test_gpu_management.sh --url http://127.0.0.1:$PORT"
    rule
    echo
    exec "$VENV/bin/dsocr" serve --host "$HOST" --port "$PORT" --device "$device" \
        --idle-timeout "$GPU_IDLE_TIMEOUT" --model "$DSOCR_MODEL" "$@"
}

if [[ $DSOCR_MODE == docker ]]; then
    if (($#)); then
        warn "arguments are for local mode; Docker takes its settings from the environment: $*"
    fi
    run_docker
else
    run_local "$@"
fi
