#!/usr/bin/env bash
# Walks a running dsocr server through every model state and checks each step:
#
#   release → unloaded → OCR → resident (gpu, or cpu on a CPU host) → offload → cached (cpu)
#           → OCR (restore from shared memory) → resident → release → unloaded
#
# printing the model's memory (and nvidia-smi's, where there is one) at each step. It releases the
# model first, so point it at a server you may disturb.
#
# Usage: ./test_gpu_management.sh [--url URL] [--model NAME] [--image FILE] [--expect TEXT]
#   --url     default http://127.0.0.1:${PORT:-8001}
#   --model   the model to walk through (default: the server's default model)
#   --image   the image to read (default: tests/data/sample.png, which reads "dsocr sample 42")
#   --expect  text the result must contain (default: "sample 42" for the bundled image)
# DSOCR_API_KEY, when set, is sent as "Authorization: Bearer ...".
# Exit status: 0 every check held, 1 a check failed, 2 no server answers, 64 bad usage.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
url="http://127.0.0.1:${PORT:-8001}"
model=""
image="$here/tests/data/sample.png"
expect=""
timeout_s=${DSOCR_TEST_TIMEOUT:-600}

usage() { sed -n '2,17s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

while (($#)); do
    case $1 in
        --url) url=${2:?--url needs a value}; shift 2 ;;
        --url=*) url=${1#*=}; shift ;;
        --model) model=${2:?--model needs a value}; shift 2 ;;
        --model=*) model=${1#*=}; shift ;;
        --image) image=${2:?--image needs a value}; shift 2 ;;
        --image=*) image=${1#*=}; shift ;;
        --expect) expect=${2?--expect needs a value}; shift 2 ;;
        --expect=*) expect=${1#*=}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 64 ;;
    esac
done
url=${url%/}
if [[ -z $expect && $image == "$here/tests/data/sample.png" ]]; then
    expect="sample 42"
fi
export DSOCR_EXPECT=$expect

if [[ -t 1 && -z ${NO_COLOR:-} ]]; then
    green=$'\e[32m' red=$'\e[31m' dim=$'\e[2m' bold=$'\e[1m' reset=$'\e[0m'
else
    green="" red="" dim="" bold="" reset=""
fi

checks=0
step() { printf '\n%s%s%s\n' "$bold" "$*" "$reset"; }
ok() { checks=$((checks + 1)); printf '  %s✓%s %s\n' "$green" "$reset" "$*"; }
info() { printf '  %s%s%s\n' "$dim" "$*" "$reset"; }
die() {
    local code=$1; shift
    printf '  %s✗ %s%s\n' "$red" "$*" "$reset" >&2
    printf '\n%sFAILED%s after %d checks (%s)\n' "$red" "$reset" "$checks" "$url" >&2
    exit "$code"
}

command -v curl >/dev/null || die 1 "curl is needed"
if [[ -x $here/.venv/bin/python ]]; then
    py=$here/.venv/bin/python
elif command -v python3 >/dev/null; then
    py=python3
else
    die 1 "python3 is needed to read JSON"
fi
[[ -r $image ]] || die 64 "cannot read the image $image"

auth=()
if [[ -n ${DSOCR_API_KEY:-} ]]; then
    auth=(-H "Authorization: Bearer $DSOCR_API_KEY")
fi
model_query=""
model_form=()
if [[ -n $model ]]; then
    model_query="?model=$model"
    model_form=(-F "model=$model")
fi

# request METHOD PATH [curl args]: sets BODY, CODE and SECONDS_TAKEN; no answer at all exits 2.
request() {
    local method=$1 path=$2 out rc=0
    shift 2
    out=$(curl -sS --max-time "$timeout_s" -X "$method" ${auth[@]+"${auth[@]}"} "$@" \
        -w '\n%{http_code} %{time_total}' "$url$path" 2>&1) || rc=$?
    local error=${out%$'\n'*}
    error=${error##*curl: }
    case $rc in
        0) ;;
        6 | 7) die 2 "no dsocr server answers at $url: $error" ;;
        28) die 1 "$method $path took longer than ${timeout_s}s" ;;
        *) die 1 "$method $path failed: $error" ;;
    esac
    BODY=${out%$'\n'*}
    read -r CODE SECONDS_TAKEN <<<"${out##*$'\n'}"
}

# json EXPR: evaluates a Python expression over the last body (d) and, for status
# bodies, the walked model's entry (m); prints the result. The body goes through stdin: a long
# OCR answer would not fit in an argument.
json() {
    "$py" -c '
import json, os, sys
d = json.load(sys.stdin)
ms = [x for x in d.get("models", []) if isinstance(x, dict) and x.get("model") == sys.argv[1]] if isinstance(d, dict) else []
m = ms[0] if ms else d
v = eval(sys.argv[2], {"d": d, "m": m, "os": os})
print(json.dumps(v) if isinstance(v, (dict, list)) else ("" if v is None else v))
' "$model" "$1" <<<"$BODY"
}

expect_ok() {  # what: the last request answered 200 with JSON
    [[ $CODE == 200 ]] || {
        local error
        error=$(json 'd.get("error", d)' 2>/dev/null || printf '%s' "${BODY:0:300}")
        if [[ $CODE == 401 ]]; then
            error="$error (set DSOCR_API_KEY)"
        fi
        die 1 "$1: HTTP $CODE: $error"
    }
    json 'd' >/dev/null 2>&1 || die 1 "$1: the answer is not JSON: ${BODY:0:300}"
}

# check DESCRIPTION PYTHON-EXPR: the expression over the last body must be true.
check() {
    local result
    result=$(json "bool($2)" 2>&1) || die 1 "$1: cannot evaluate ($result)"
    [[ $result == True ]] || die 1 "$1 does not hold: $(json 'm' 2>/dev/null | cut -c1-400)"
    ok "$1"
}

show_memory() {
    info "$(json '"state %s, location %s, engine pid %s, idle %.1fs, shared memory %.1f MiB" % (m["state"], m["model_location"], m.get("engine_pid") or "-", m["idle_time"], m.get("shared_memory_bytes", 0) / 2**20)')"
    info "$(json '"GPU memory: allocated %.3f GiB, reserved %.3f GiB, engine process %.0f MiB (NVML)" % (m["gpu_memory_allocated"], m["gpu_memory_reserved"], m.get("engine_gpu_memory_bytes", 0) / 2**20)')"
    if command -v nvidia-smi >/dev/null; then
        # every GPU: in a container the server's GPU index is not the host's
        info "nvidia-smi: $(nvidia-smi --query-gpu=index,memory.used,memory.total --format=csv,noheader 2>&1 |
            paste -sd ';' - | sed 's/;/; /g')"
    fi
}

status() {
    request GET /gpu/status
    expect_ok "GET /gpu/status"
}

ocr() {
    request POST /ocr -F "file=@$image" -F prompt_type=ocr ${model_form[@]+"${model_form[@]}"}
    expect_ok "POST /ocr"
    check "the OCR succeeded" 'd.get("success") is True'
    if [[ -n $expect ]]; then
        check "the text contains \"$expect\"" 'os.environ["DSOCR_EXPECT"].lower() in d["text"].lower()'
    fi
    info "text: $(json 'd["text"][:200].replace("\n", " ⏎ ")')"
    info "round trip $(printf '%.3f' "$SECONDS_TAKEN")s; server: $(json '", ".join(("%s %.3fs" % (k[:-2], v)) if k.endswith("_s") else ("%s %s" % (k, v)) for k, v in d["metadata"]["timing"].items() if isinstance(v, (int, float)))')"
}

printf '%s==================================================%s\n' "$bold" "$reset"
printf '%s🧪 dsocr GPU management check%s  %s\n' "$bold" "$reset" "$url"
printf '%s==================================================%s\n' "$bold" "$reset"

step "1. Health"
request GET /health
expect_ok "GET /health"
check "the server is healthy" 'd["status"] == "healthy"'
backend=$(json 'd["backend"]')
resident_location=cpu
if [[ $backend == cuda ]]; then
    resident_location=gpu
fi
info "backend $backend, device $(json 'd["device"]'), idle timeout $(json 'd["timeout"]')s"

step "2. Status as found"
status
if [[ -n $model && $(json 'm is not d') != True ]]; then
    die 1 "this server does not run model $model; it runs: $(json '", ".join(x["model"] for x in d["models"])')"
fi
[[ -n $model ]] || model=$(json 'd["model"]')
show_memory

step "3. Release: start from nothing"
request POST "/gpu/release$model_query"
expect_ok "POST /gpu/release"
check "release answered" 'd["status"] == "released"'
status
check "$model is unloaded" 'm["state"] == "unloaded" and m["model_location"] == "unloaded"'
check "no engine runs and no shared memory is held" 'm["engine_pid"] is None and m["shared_memory_bytes"] == 0'
show_memory

step "4. OCR: load the model"
ocr
status
check "$model is resident on the $resident_location" \
    "m['state'] == 'resident' and m['model_location'] == '$resident_location'"
check "an engine runs and the weights are in shared memory" 'm["engine_pid"] and m["shared_memory_bytes"] > 0'
if [[ $backend == cuda ]]; then
    check "the engine holds GPU memory" 'm["gpu_memory_allocated"] > 0'
fi
resident_allocated=$(json 'm["gpu_memory_allocated"]')
show_memory

step "5. Offload: weights leave the device, stay in shared memory"
request POST "/gpu/offload$model_query"
expect_ok "POST /gpu/offload"
check "offload answered" 'd["status"] == "offloaded"'
info "$(json 'd["message"]') in $(printf '%.3f' "$SECONDS_TAKEN")s"
status
check "$model is cached on the cpu" 'm["state"] == "cached" and m["model_location"] == "cpu"'
check "the weights are still in shared memory" 'm["shared_memory_bytes"] > 0'
if [[ $backend == cuda ]]; then
    check "GPU memory went down" "m['gpu_memory_allocated'] < $resident_allocated"
fi
show_memory

step "6. OCR again: restore from shared memory"
ocr
status
check "$model is resident on the $resident_location again" \
    "m['state'] == 'resident' and m['model_location'] == '$resident_location'"
show_memory

step "7. Release: nothing left"
request POST "/gpu/release$model_query"
expect_ok "POST /gpu/release"
check "release answered" 'd["status"] == "released"'
info "$(json 'd["message"]') in $(printf '%.3f' "$SECONDS_TAKEN")s"
status
check "$model is unloaded" 'm["state"] == "unloaded" and m["model_location"] == "unloaded"'
check "no engine, no shared memory, no GPU memory" \
    'm["engine_pid"] is None and m["shared_memory_bytes"] == 0 and m.get("engine_gpu_memory_bytes", 0) == 0'
show_memory

printf '\n%s✅ All %d checks passed%s (%s, model %s, %s)\n' "$green" "$checks" "$reset" "$url" "$model" "$backend"
