#!/usr/bin/env bash
# Run a sisu command under the GPU profiler that is installed: rocprofv3, rocprof (v1) or Nsight Systems.
#
#   launch/profile.sh [OPTIONS] -- CMD [ARGS...]
#   launch/profile.sh -- python launch/sft.py --config recipes/test/tiny_sft.yaml train.max_steps=8
#   launch/profile.sh --tool nsys --out prof/sft -- torchrun --nproc_per_node 8 launch/sft.py --config R.yaml
#
# For launch/sft.py and launch/dpo.py it appends the overrides profile.enabled=true profile.wait=W
# profile.warmup=U profile.active=A (keys you set yourself are left alone): the trainer's torch.profiler
# schedule then records exactly that window of steps (traces under OUTPUT_DIR/profile/), while the named ranges
# (data, forward, backward, optimizer, checkpoint, ...) appear as NVTX/roctx markers in the external profiler.
# The external profiler records the whole process unless told otherwise, so bound it: --steps N ends the run
# after N steps (e.g. wait + warmup + active), --delay/--duration gives a time window (rocprofv3, nsys), and
# --capture api (nsys) captures between cudaProfilerStart and cudaProfilerStop only: sisu's trainer
# brackets the active profile steps with torch.cuda.profiler.start()/stop(). Other commands (eval, translate) get no
# profile.* overrides. Reading the results: docs/profiling.md.
#
# Options:
#   --tool auto|rocprofv3|rocprof|nsys  profiler (auto: the first one found on PATH, in this order)
#   --out DIR            output directory (default: outputs/profile/TOOL-YYYYmmdd-HHMMSS)
#   --wait N --warmup N --active N      torch.profiler schedule (defaults 1, 1, 3)
#   --ranks LIST         ranks that record, e.g. [0] or [0,8] (profile.ranks)
#   --memory             also record memory (profile.memory=true)
#   --steps N            stop the run after N optimizer steps (train.max_steps=N)
#   --no-overrides       add no profile.* overrides
#   --delay S --duration S   profile a time window: start after --delay seconds (default 0), last --duration
#   --capture whole|api  nsys: the whole run (default) or only between cudaProfilerStart/Stop
#   --tool-args "ARGS"   extra profiler arguments, e.g. "--truncate-kernels" for rocprofv3
#   --dry-run            print the command line and exit
set -euo pipefail

usage() {
    echo "usage: launch/profile.sh [--tool auto|rocprofv3|rocprof|nsys] [--out DIR] [--wait N] [--warmup N]" \
        "[--active N] [--ranks LIST] [--memory] [--steps N] [--no-overrides] [--delay S --duration S]" \
        "[--capture whole|api] [--tool-args ARGS] [--dry-run] -- CMD [ARGS...]" >&2
    exit 2
}

tool=auto out="" wait_steps=1 warmup=1 active=3 ranks="" memory=0 steps="" overrides=1
delay="" duration="" capture=whole tool_args="" dry_run=0
while (($#)); do
    case $1 in
    --tool) tool=${2:?--tool needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    --wait) wait_steps=${2:?--wait needs a value}; shift 2 ;;
    --warmup) warmup=${2:?--warmup needs a value}; shift 2 ;;
    --active) active=${2:?--active needs a value}; shift 2 ;;
    --ranks) ranks=${2:?--ranks needs a value}; shift 2 ;;
    --memory) memory=1; shift ;;
    --steps) steps=${2:?--steps needs a value}; shift 2 ;;
    --no-overrides) overrides=0; shift ;;
    --delay) delay=${2:?--delay needs a value}; shift 2 ;;
    --duration) duration=${2:?--duration needs a value}; shift 2 ;;
    --capture) capture=${2:?--capture needs a value}; shift 2 ;;
    --tool-args) tool_args=${2?--tool-args needs a value}; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --) shift; break ;;
    -h | --help) usage ;;
    *) echo "error: unknown option $1 (the command goes after --)" >&2; usage ;;
    esac
done
(($#)) || { echo "error: no command to profile" >&2; usage; }
cmd=("$@")

# --- which profiler ---------------------------------------------------------------------------------------------
if [[ $tool == auto ]]; then
    for candidate in rocprofv3 rocprof nsys; do
        if command -v "$candidate" >/dev/null; then
            tool=$candidate
            break
        fi
    done
    if [[ $tool == auto ]]; then
        echo "error: no GPU profiler found on PATH (looked for rocprofv3, rocprof, nsys): install ROCm's" \
            "rocprofiler-sdk or NVIDIA Nsight Systems, or use the built-in torch.profiler by adding" \
            "profile.enabled=true to the command (docs/profiling.md)" >&2
        exit 127
    fi
elif [[ $tool != rocprofv3 && $tool != rocprof && $tool != nsys ]]; then
    echo "error: --tool $tool: expected auto, rocprofv3, rocprof or nsys" >&2
    exit 2
elif ! command -v "$tool" >/dev/null; then
    echo "error: --tool $tool: $tool not found on PATH" >&2
    exit 127
fi
if [[ -n $delay$duration && ( -z $duration || $tool == rocprof ) ]]; then
    echo "error: a time window needs --duration (and --delay, default 0) and rocprofv3 or nsys" >&2
    exit 2
fi
delay=${delay:-0}
if [[ $capture != whole && ( $capture != api || $tool != nsys || -n $duration ) ]]; then
    echo "error: --capture $capture: expected whole, or api with nsys and no time window" >&2
    exit 2
fi

# --- the step window: profile.* overrides for the trainer -----------------------------------------------------
is_trainer=0
for arg in "${cmd[@]}"; do
    if [[ $arg == *launch/sft.py || $arg == *launch/dpo.py || $arg == sft.py || $arg == dpo.py ]]; then
        is_trainer=1
    fi
done
# Append key=value unless the command already sets that key (a later override would silently win).
add_override() {
    local key=${1%%=*} arg
    for arg in "${cmd[@]}"; do
        [[ $arg == "$key="* ]] && return 0
    done
    cmd+=("$1")
}
if ((is_trainer && overrides)); then
    add_override profile.enabled=true
    add_override "profile.wait=$wait_steps"
    add_override "profile.warmup=$warmup"
    add_override "profile.active=$active"
    [[ -n $ranks ]] && add_override "profile.ranks=$ranks"
    ((memory)) && add_override profile.memory=true
fi
if [[ -n $steps ]]; then
    ((is_trainer)) || { echo "error: --steps applies to launch/sft.py and launch/dpo.py" >&2; exit 2; }
    add_override "train.max_steps=$steps"
fi
window=whole
if [[ -n $duration ]]; then
    window="time $delay+${duration}s"
elif [[ $capture == api ]]; then
    window="cudaProfilerStart..Stop"
elif [[ -n $steps ]]; then
    window="whole run of $steps steps"
fi

# --- the profiler's command line --------------------------------------------------------------------------------
if [[ -z $out ]]; then
    # Under outputs/, which git ignores, like every run's output.
    printf -v out 'outputs/profile/%s-%(%Y%m%d-%H%M%S)T' "$tool" -1
fi
read -r -a extra <<<"$tool_args"
case $tool in
rocprofv3)
    # One directory per host, one file set per process (torchrun's workers are separate processes).
    prof=(rocprofv3 --kernel-trace --marker-trace --stats --output-format csv pftrace
        -d "$out" -o "%hostname%/%pid%")
    [[ -n $duration ]] && prof+=(--collection-period "$delay:$duration:1")
    prof+=("${extra[@]}" --)
    ;;
rocprof)
    # rocprof v1: results.stats.csv (kernels) and the roctx ranges in the output directory.
    prof=(rocprof --stats --roctx-trace -d "$out" -o "$out/results.csv" "${extra[@]}")
    ;;
nsys)
    prof=(nsys profile -t "cuda,nvtx,osrt" --stats=true --force-overwrite=true -o "$out/sisu-%h-%p")
    if [[ $capture == api ]]; then
        prof+=(--capture-range=cudaProfilerApi --capture-range-end=stop)
    elif [[ -n $duration ]]; then
        prof+=(--delay="$delay" --duration="$duration")
    fi
    prof+=("${extra[@]}")
    ;;
esac

if ((dry_run)); then
    printf '%q ' "${prof[@]}" "${cmd[@]}"
    echo
    exit 0
fi
mkdir -p "$out"
echo "profile.sh: $tool, window: $window, output: $out" >&2
rc=0
"${prof[@]}" "${cmd[@]}" || rc=$?
case $tool in
rocprofv3) hint="kernel statistics in $out/<host>/<pid>_kernel_stats.csv" ;;
rocprof) hint="kernel statistics in $out/results.stats.csv" ;;
nsys) hint="nsys stats --report cuda_gpu_kern_sum $out/sisu-*.nsys-rep" ;;
esac
echo "profile.sh: command exited with status $rc; $hint (docs/profiling.md)" >&2
exit "$rc"
