#!/usr/bin/env bash
# The prepared device check of the CUDA backend (issue 12), one call on the lent GPU machine:
#   bash scripts/gpu-check.sh             real mode: nvcc build (sm_80 + sm_90, CMakeLists.txt),
#                                         fat-binary architectures, the op-by-backend harness and
#                                         the CUDA tests on the device, CMUNeXt-S / NExNet training
#                                         step cuda vs cpu, timing of every model, PyTorch CUDA
#                                         timing of the same models (fp32).
#   bash scripts/gpu-check.sh --dry-run   the same steps here on the emulated flavour
#                                         (SCALPEL_FLAVOUR=emu) at small sizes; the steps that need
#                                         nvcc, a GPU or CUDA PyTorch are reported as skipped.
# Writes $OUT/gpu-check.json and $OUT/gpu-check.md (each step ok / failed / skipped with its
# reason and duration); a failed step does not stop the later ones. $OUT defaults to a new temp
# folder. GPU_CHECK_DEADLINE_MS (epoch ms) bounds the whole run; by default now + 8 min (real)
# or + 80 s (dry run). Without `node` on PATH it unpacks .gpu-carry/runtime.tar.xz
# (`npm run gpu:pack`) with python3 and uses the node binary and node_modules in it.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DRY=0
for a in "$@"; do
  case "$a" in
    --dry-run) DRY=1 ;;
    *) echo "gpu-check: unknown argument '$a' (only --dry-run)" >&2; exit 2 ;;
  esac
done
OUT="${OUT:-$(mktemp -d -t gpu-check.XXXXXX)}"
mkdir -p "$OUT"
WORK="$(mktemp -d -t gpu-check-work.XXXXXX)"
now_ms() { date +%s%3N; }
START_MS=$(now_ms)
if [[ -z "${GPU_CHECK_DEADLINE_MS:-}" ]]; then
  if (( DRY )); then GPU_CHECK_DEADLINE_MS=$((START_MS + 80000)); else GPU_CHECK_DEADLINE_MS=$((START_MS + 480000)); fi
fi
export GPU_CHECK_DEADLINE_MS
STEPS="$WORK/steps.jsonl"
: >"$STEPS"
LOG="$OUT/gpu-check.log"
: >"$LOG"

json_str() { # a JSON string literal of $1 (no python/node needed)
  local s=${1//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\t'/ }; s=${s//$'\r'/}
  printf '"%s"' "$s"
}
# record NAME STATUS REASON DURATION_MS [DETAIL_JSON_FILE]
record() {
  local detail="null"
  if [[ -n "${5:-}" && -s "$5" ]]; then detail="$(json_str "$5")"; fi
  printf '{"name":%s,"status":"%s","reason":%s,"durationMs":%s,"detailFile":%s}\n' \
    "$(json_str "$1")" "$2" "$(json_str "$3")" "$4" "$detail" >>"$STEPS"
  echo "[gpu-check] $1: $2${3:+ ($3)} in $4 ms" | tee -a "$LOG"
}
left_s() { echo $(( (GPU_CHECK_DEADLINE_MS - $(now_ms)) / 1000 )); }
# step NAME MIN_SECONDS DETAIL_FILE -- command...: runs the command under the time left, logs it
step() {
  local name=$1 need=$2 detail=$3; shift 4
  local left; left=$(left_s)
  if (( left < need )); then record "$name" skipped "time budget: ${left} s left, needs ${need} s" 0; return; fi
  local t0; t0=$(now_ms)
  echo "[gpu-check] === $name ($*) ===" >>"$LOG"
  timeout --kill-after=5 "$left" "$@" >>"$LOG" 2>&1
  local rc=$?
  local ms=$(( $(now_ms) - t0 ))
  if (( rc == 0 )); then record "$name" ok "" "$ms" "$detail"
  elif (( rc == 124 || rc == 137 )); then record "$name" failed "stopped at the deadline after ${left} s" "$ms" "$detail"
  else record "$name" failed "exit status $rc (see gpu-check.log)" "$ms" "$detail"; fi
}

# --- node: this machine's, or the carried one --------------------------------------------------
t0=$(now_ms)
if ! command -v node >/dev/null 2>&1; then
  if [[ -f .gpu-carry/runtime.tar.xz ]]; then
    python3 -c 'import sys,tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' .gpu-carry/runtime.tar.xz .gpu-carry/rt >>"$LOG" 2>&1
    export PATH="$ROOT/.gpu-carry/rt/bin:$PATH"
    [[ -e node_modules ]] || ln -s .gpu-carry/rt/node_modules node_modules
  fi
fi
if command -v node >/dev/null 2>&1 && [[ -x node_modules/.bin/mocha ]]; then
  record "node runtime" ok "$(node --version) at $(command -v node)" $(( $(now_ms) - t0 ))
else
  record "node runtime" failed "no node on PATH and no usable .gpu-carry/runtime.tar.xz (run npm run gpu:pack here, carry .gpu-carry)" $(( $(now_ms) - t0 ))
fi
{ echo "[gpu-check] machine:"; uname -a; nvidia-smi 2>&1 | head -15; nvcc --version 2>&1 | tail -2; } >>"$LOG" 2>&1
TSX="node_modules/.bin/tsx"
MOCHA="node_modules/.bin/mocha"

# --- build ---------------------------------------------------------------------------------------
if (( DRY )); then
  export SCALPEL_FLAVOUR=emu
  if [[ -f build/Release/scalpel_emu.node ]]; then
    record "nvcc build (sm_80, sm_90)" skipped "dry run: no nvcc build; the emulated addon build/Release/scalpel_emu.node runs the CUDA sources" 0
  else
    record "nvcc build (sm_80, sm_90)" failed "dry run needs build/Release/scalpel_emu.node (node scripts/build-native.js with cmake)" 0
  fi
else
  # The project's normal build: CMakeLists.txt names CMAKE_CUDA_ARCHITECTURES "80;90" when nvcc
  # is found. The emulated flavour is not needed on the GPU machine.
  SCALPEL_EMU=0 SCALPEL_BUILD_JOBS="$(nproc)" step "nvcc build (sm_80, sm_90)" 60 "" -- node scripts/build-native.js
fi

# --- fat binaries --------------------------------------------------------------------------------
ADDON=build/Release/scalpel.node
if [[ -f "$ADDON" ]]; then
  (( DRY )) || { echo "[gpu-check] cuobjdump --list-elf:"; cuobjdump --list-elf "$ADDON" 2>&1 | head -200; } >"$WORK/cuobjdump.txt" 2>&1
  step "fat-binary architectures" 5 "$OUT/fatbin.json" -- "$TSX" scripts/gpu-check/fatbin-main.ts "$ADDON" "$OUT/fatbin.json" "$WORK/cuobjdump.txt" $((DRY ? 0 : 1))
else
  record "fat-binary architectures" failed "no $ADDON" 0
fi

# --- op-by-backend harness and CUDA tests on the device ----------------------------------------
TESTS=(test/backend-ops.test.ts test/cuda*.test.ts)
if (( DRY )); then
  # The whole emulated harness takes minutes on two cores: a subset by name.
  GPU_CHECK_TESTS_JSON="$OUT/tests.json" step "harness + CUDA tests" 20 "$OUT/tests.json" -- \
    "$MOCHA" --reporter scripts/gpu-check/mocha-reporter.js -g "${GPU_CHECK_GREP:-relu|matmul|conv|batchNorm|softmax|sum|add}" "${TESTS[@]}"
else
  GPU_CHECK_TESTS_JSON="$OUT/tests.json" step "harness + CUDA tests" 30 "$OUT/tests.json" -- \
    "$MOCHA" --reporter scripts/gpu-check/mocha-reporter.js --timeout 120000 "${TESTS[@]}"
fi

# --- models: training step cuda vs cpu, then timing ---------------------------------------------
if (( DRY )); then
  step "models: training step cuda vs cpu" 15 "$OUT/compare.json" -- "$TSX" scripts/gpu-check/models.ts --part compare --small --models cmunext-s --out "$OUT/compare.json"
  step "models: timing (scalpel cuda)" 10 "$OUT/timing.json" -- "$TSX" scripts/gpu-check/models.ts --part timing --small --models cmunext-s --out "$OUT/timing.json"
  record "models: timing (PyTorch cuda)" skipped "dry run: no CUDA PyTorch here (and tests must not call Python)" 0
else
  step "models: training step cuda vs cpu" 30 "$OUT/compare.json" -- "$TSX" scripts/gpu-check/models.ts --part compare --out "$OUT/compare.json"
  # PyTorch's share of what is left is reserved by ending scalpel's timing 90 s early.
  GPU_CHECK_DEADLINE_MS=$((GPU_CHECK_DEADLINE_MS - 90000)) step "models: timing (scalpel cuda)" 30 "$OUT/timing.json" -- "$TSX" scripts/gpu-check/models.ts --part timing --out "$OUT/timing.json"
  PYTHONUNBUFFERED=1 step "models: timing (PyTorch cuda)" 20 "$OUT/torch.json" -- python3 scripts/gpu-check/torch_bench.py --out "$OUT/torch.json"
fi

# --- report --------------------------------------------------------------------------------------
if command -v node >/dev/null 2>&1; then
  node scripts/gpu-check/report.js "$STEPS" "$OUT" $DRY "$START_MS" || cp "$STEPS" "$OUT/gpu-check.steps.jsonl"
else
  cp "$STEPS" "$OUT/gpu-check.steps.jsonl"
fi
status=0
grep -q '"status":"failed"' "$STEPS" && status=1
rm -rf "$WORK"
echo "[gpu-check] results: $OUT/gpu-check.md, $OUT/gpu-check.json"
exit $status
