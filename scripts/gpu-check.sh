#!/usr/bin/env bash
# The GPU checks behind docs/gpu.md, as one prepared script a machine with an NVIDIA GPU runs as it is, from
# the repository root, after the README's setup (.venv with the harness and its frameworks):
#
#   bash scripts/gpu-check.sh                 # the real check: split environments, --device gpu --strict-device
#   bash scripts/gpu-check.sh --dry-run       # the same plumbing on the CPU: default environment, 20 frames
#
# What it does, in order (each step's output is kept; a failing step is recorded and the next one runs):
#   1. the machine: nvidia-smi, the harness's Python and packages;
#   2. harness convert, once, in the default environment: the SavedModel, ONNX file and PyTorch weights are
#      made with TensorFlow, which torch-gpu and ort-gpu do not have (they read these from the shared cache);
#   3. harness env create --gpu: tf-gpu, torch-gpu, ort-gpu (skipped with --dry-run or --no-create; a machine
#      that cannot reach the package registry records why and goes on with what is built);
#   4. harness doctor --json in the default environment and in each split environment;
#   5. tf1 and tf2, torch, onnxruntime on PETS (200 frames, shared preprocessing) with --device gpu
#      --strict-device, each in its GPU environment (--env gpu-layout: the built one, else the default, said);
#   6. figures.md: the rows to paste into docs/gpu.md (placement evidence, GPU timings, the doctor's verdicts).
#
# Everything goes to one folder: --out DIR, else $OUT (the device machine's output folder), else
# results/gpu-check. Budget: under 10 minutes on a fast machine with a GPU once the environments are built.
set -euo pipefail

usage() {
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    echo "options: --dry-run  --no-create  --frames N  --out DIR  --python PATH (default .venv/bin/python)"
}

DRY=0
CREATE=1
FRAMES=""
DEST=""
PY="${PYTHON:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --no-create) CREATE=0 ;;
        --frames) FRAMES="$2"; shift ;;
        --out) DEST="$2"; shift ;;
        --python) PY="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ ! -f pyproject.toml ] || [ ! -d harness ]; then
    echo "error: run it from the repository root (bash scripts/gpu-check.sh)" >&2
    exit 2
fi
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if [ "$DRY" = 1 ]; then
    FRAMES="${FRAMES:-20}"; DEVICE=cpu; STRICT=(); ENV_CHOICE=default; CREATE=0
else
    FRAMES="${FRAMES:-200}"; DEVICE=gpu; STRICT=(--strict-device); ENV_CHOICE=gpu-layout
fi
DEST="${DEST:-${OUT:-results/gpu-check}}"
mkdir -p "$DEST"
RESULTS="$DEST/results"
LOG="$DEST/gpu-check.log"
: > "$LOG"
START=$(date +%s)
FAILED=()

step() { echo "== [$(( $(date +%s) - START )) s] $*" | tee -a "$LOG"; }
harness() { "$PY" -m harness "$@"; }
# record [--verdict] FILE COMMAND...: run a command, its output into FILE and the log; a failure is noted,
# not fatal. --verdict: the exit status is a finding (the doctor's 1 = mismatch, 3 = not GPU-ready), not a failure
record() {
    local verdict=0
    if [ "$1" = --verdict ]; then verdict=1; shift; fi
    local name="$1"; shift
    local rc=0
    "$@" > "$DEST/$name" 2>&1 || rc=$?
    cat "$DEST/$name" >> "$LOG"
    echo "   exit $rc: $*" | tee -a "$LOG"
    if [ "$rc" != 0 ] && { [ "$verdict" = 0 ] || [ "$rc" = 2 ]; }; then FAILED+=("$name (exit $rc)"); fi
    return 0
}

step "machine (mode: $([ "$DRY" = 1 ] && echo 'dry run on the CPU' || echo 'GPU'))"
record nvidia-smi.txt bash -c 'nvidia-smi || echo "nvidia-smi: not available here"'
record python.txt "$PY" -c 'import sys, harness; print(sys.version); print("harness", harness.__file__)'

step "harness convert (once, in the default environment)"
record convert.txt harness convert --backend tf2 --backend torch --backend onnxruntime --backend opencv

ENVS=()
if [ "$CREATE" = 1 ]; then
    step "harness env create --gpu"
    record env-create.txt harness env create --gpu
fi
if [ "$DRY" = 0 ]; then
    ENVS=(tf-gpu torch-gpu ort-gpu)
fi
record env-list.txt harness env list

step "harness doctor --json: default environment"
record --verdict doctor-default.json harness doctor --json
for env in "${ENVS[@]}"; do
    step "harness doctor --json: $env"
    record --verdict "doctor-$env.json" harness doctor --env "$env" --json
done

COMMON=(--video pets09-s2l1 --frames "$FRAMES" --preprocess shared --device "$DEVICE" "${STRICT[@]}"
        --env "$ENV_CHOICE" --out "$RESULTS" --quiet --no-report)
step "tf1 and tf2 ($ENV_CHOICE, --device $DEVICE ${STRICT[*]:-}, $FRAMES frames)"
record run-tf.txt harness run -b tf1 -b tf2 "${COMMON[@]}"
step "torch"
record run-torch.txt harness run -b torch "${COMMON[@]}"
step "onnxruntime"
record run-onnxruntime.txt harness run -b onnxruntime "${COMMON[@]}"
step "report"
record report.txt harness report "$RESULTS"

step "figures.md"
record figures.txt "$PY" - "$DEST" <<'PYEOF'
"""Write figures.md: the numbers docs/gpu.md shows, from what the steps above wrote."""
import json
import sys
from pathlib import Path

import pandas as pd

dest = Path(sys.argv[1])
lines = ["# GPU check figures", ""]
runs_csv = dest / "results" / "runs.csv"
if runs_csv.is_file():
    runs = pd.read_csv(runs_csv, dtype=str).fillna("")
    cols = ["backend", "env", "framework_version", "device_requested", "device_actual", "status", "frames",
            "load_s", "first_ms", "p50_ms", "p90_ms", "infer_ms", "model_fps", "pipeline_fps", "peak_gpu_mb"]
    cols = [c for c in cols if c in runs.columns]
    lines += ["## Jobs (runs.csv)", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for _, r in runs.iterrows()]
    lines += ["", "## Placement evidence and causes", ""]
    for _, r in runs.iterrows():
        lines.append(f"- `{r['job_id']}`: {r.get('placement_evidence', '')}" + (f" -- {r['cause']}" if r.get("cause") else ""))
else:
    lines += ["No runs.csv: no job ran (see gpu-check.log)."]
lines += ["", "## Doctor verdicts", "", "| environment | backend | verdict | why |", "|---|---|---|---|"]
for path in sorted(dest.glob("doctor-*.json")):
    env = path.stem[len("doctor-"):]
    text = path.read_text()
    try:
        report = json.loads(text[text.index("{"):])
    except ValueError:
        lines.append(f"| {env} | - | no report | {' '.join(text.split()[:30])} |")
        continue
    reports = report.get("environments", {env: report})
    for name, rep in reports.items():
        for backend, v in (rep.get("backends") or {}).items():
            why = str(v.get("reason", "")).replace("|", "/")
            lines.append(f"| {name} | {backend} | {v.get('status')} | {why} |")
(dest / "figures.md").write_text("\n".join(lines) + "\n")
print(f"wrote {dest / 'figures.md'}")
PYEOF

step "done in $(( $(date +%s) - START )) s: $DEST"
if [ "${#FAILED[@]}" -gt 0 ]; then
    echo "steps that failed (their output is in $DEST):" | tee -a "$LOG"
    printf '  %s\n' "${FAILED[@]}" | tee -a "$LOG"
    exit 1
fi
