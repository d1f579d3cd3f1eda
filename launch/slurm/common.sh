# shellcheck shell=bash
# Shared logic of launch/slurm/lumi.sbatch and launch/slurm/nvidia.sbatch.
#
# Three roles, one file (so that the site scripts stay a list of environment settings):
#   batch   sourced by an sbatch script: sisu_parse_args, then sisu_launch, which starts ONE torchrun per node
#           with srun, c10d rendezvous on the first node of the allocation, forwards the preemption signal and
#           requeues the job after a time-limit stop.
#   node    `bash common.sh node TORCHRUN...`: the srun task on every node. Runs torchrun with SIGUSR1 ignored
#           (its default action would kill torchrun, and with it the workers before they checkpoint) and
#           forwards SIGUSR1/SIGTERM itself.
#   worker  `bash common.sh worker CMD...`: what torchrun starts for every local rank (torchrun --no-python).
#           Records its pid for the signal forwarding, binds to the CPU cores of its GPU, then execs CMD.
#
# Settings (environment; the sbatch scripts set site defaults):
#   SISU_PYTHON           python that runs the workers (default: python3)
#   SISU_TORCHRUN         launcher command line (default: "$SISU_PYTHON -m torch.distributed.run"), e.g. a venv's
#                         bin/torchrun or "singularity exec IMAGE.sif python -m torch.distributed.run"
#   SISU_NPROC_PER_NODE   workers per node (default: the GPUs Slurm gives each node)
#   SISU_RDZV_PORT        rendezvous port on the first node (default: 29500 + job id mod 2000)
#   SISU_MAX_RESTARTS     torchrun elastic restarts of the worker group after a failure (default: 2); each restart
#                         resumes from the newest checkpoint because resume=auto
#   SISU_REQUEUE          1 (default): after a stop on the time-limit signal, `scontrol requeue` the job
#   SISU_CPU_LISTS        space-separated CPU lists, one per local rank (bind worker i to list i); empty: no binding
#   SISU_SRUN_ARGS        extra srun arguments; SISU_TORCHRUN_ARGS extra torchrun arguments
#   SISU_PRINT_ONLY       1: print the srun command line and exit (what `sbatch` would run)

SISU_JOBS=(sft dpo eval translate make_pairs)

# Usage error: one line on stderr, status 2 (the sbatch log's first line says what was wrong).
sisu_usage_error() {
    echo "usage: sbatch [--nodes=N] ${SISU_SCRIPT:-launch/slurm/SITE.sbatch} sft|dpo|eval|translate|make_pairs CONFIG.yaml [key=value ...] ($1)" >&2
    return 2
}

# sisu_parse_args JOB CONFIG [OVERRIDES...] -> SISU_JOB, SISU_CONFIG, SISU_OVERRIDES
sisu_parse_args() {
    if (($# < 1)); then
        sisu_usage_error "missing job"
        return
    fi
    local job=$1 known
    for known in "${SISU_JOBS[@]}"; do
        [[ $job == "$known" ]] && break
        known=""
    done
    if [[ -z $known ]]; then
        sisu_usage_error "unknown job '$job'"
        return
    fi
    if (($# < 2)); then
        sisu_usage_error "missing config"
        return
    fi
    if [[ ! -f $2 ]]; then
        sisu_usage_error "config '$2' not found (relative to $PWD)"
        return
    fi
    if [[ ! -f launch/$job.py ]]; then
        sisu_usage_error "launch/$job.py not found in $PWD"
        return
    fi
    SISU_JOB=$job
    SISU_CONFIG=$2
    SISU_OVERRIDES=("${@:3}")
}

# Workers per node: explicit setting, else what Slurm allocated (SLURM_GPUS_PER_NODE may read "mi250:8").
sisu_nproc_per_node() {
    local n=${SISU_NPROC_PER_NODE:-${SLURM_GPUS_ON_NODE:-}}
    if [[ -z $n && -n ${SLURM_GPUS_PER_NODE:-} ]]; then
        n=${SLURM_GPUS_PER_NODE##*:}
    fi
    if ! [[ $n =~ ^[1-9][0-9]*$ ]]; then
        echo "error: cannot tell how many workers per node (set SISU_NPROC_PER_NODE or sbatch --gpus-per-node)" >&2
        return 2
    fi
    echo "$n"
}

# Build SISU_SRUN_CMD: srun, one task per node, each running `common.sh node torchrun ...`.
sisu_build_command() {
    local here nnodes nproc head port
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    nnodes=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
    nproc=$(sisu_nproc_per_node) || return
    # The first node of the allocation hosts the c10d store; every torchrun connects to it. (The first line of
    # `scontrol show hostnames`, taken without a pipe so that pipefail cannot trip on an early-closed pipe.)
    head=$(scontrol show hostnames "${SLURM_JOB_NODELIST:?not inside a Slurm allocation}")
    head=${head%%$'\n'*}
    if [[ -z $head ]]; then
        echo "error: scontrol gave no host for SLURM_JOB_NODELIST=$SLURM_JOB_NODELIST" >&2
        return 2
    fi
    # A port derived from the job id keeps two jobs that share a node from colliding; below the ephemeral range.
    port=${SISU_RDZV_PORT:-$((29500 + ${SLURM_JOB_ID:-0} % 2000))}

    local -a launcher extra_torchrun extra_srun worker_cmd overrides=()
    read -r -a launcher <<<"${SISU_TORCHRUN:-${SISU_PYTHON:-python3} -m torch.distributed.run}"
    read -r -a extra_torchrun <<<"${SISU_TORCHRUN_ARGS:-}"
    read -r -a extra_srun <<<"${SISU_SRUN_ARGS:-}"
    # resume=auto first so that a user override (resume=none) still wins; eval, translate and make_pairs have no resume key
    # (eval continues from responses.jsonl by itself).
    if [[ $SISU_JOB == sft || $SISU_JOB == dpo ]]; then
        overrides=(resume=auto)
    fi
    overrides+=("${SISU_OVERRIDES[@]}")
    worker_cmd=(bash "$here/common.sh" worker "${SISU_PYTHON:-python3}" -u "launch/$SISU_JOB.py"
        --config "$SISU_CONFIG" "${overrides[@]}")

    SISU_SUMMARY="$SISU_JOB on $nnodes node(s) x $nproc worker(s), rendezvous $head:$port, job ${SLURM_JOB_ID:-?}"
    SISU_SRUN_CMD=(srun --nodes="$nnodes" --ntasks="$nnodes" --ntasks-per-node=1 --kill-on-bad-exit=1)
    # Since Slurm 22.05 srun does not inherit --cpus-per-task from sbatch; without it the task (torchrun and all
    # of its workers) could be confined to one core.
    if [[ -n ${SLURM_CPUS_PER_TASK:-} ]]; then
        SISU_SRUN_CMD+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
    fi
    # No Slurm binding of the one task per node: the workers bind themselves per GPU (SISU_CPU_LISTS).
    SISU_SRUN_CMD+=(--cpu-bind=none "${extra_srun[@]}"
        bash "$here/common.sh" node
        "${launcher[@]}"
        --nnodes="$nnodes" --nproc_per_node="$nproc"
        --rdzv_backend=c10d --rdzv_endpoint="$head:$port" --rdzv_id="${SLURM_JOB_ID:-sisu}"
        --max_restarts="${SISU_MAX_RESTARTS:-2}"
        "${extra_torchrun[@]}"
        --no_python "${worker_cmd[@]}")
}

SISU_CAUGHT=""
SISU_PENDING=0

sisu_on_signal() {
    local sig=$1
    echo "sisu: caught SIG$sig, forwarding it to the job step" >&2
    SISU_CAUGHT=$sig
    SISU_PENDING=$((SISU_PENDING + 1))
    # srun forwards the signals it receives to the tasks (the node wrappers), on every node.
    kill -s "$sig" "$SISU_STEP_PID" 2>/dev/null || true
}

# Wait for a background process, also across interruptions by trapped signals; sets SISU_WAIT_RC.
sisu_wait() {
    local pid=$1 rc
    while :; do
        rc=0
        wait "$pid" || rc=$?
        # Status > 128 right after a trap ran: the wait was interrupted, the process still runs (or its status
        # is still stored and the next wait returns it).
        if ((rc > 128 && SISU_PENDING > 0)); then
            SISU_PENDING=$((SISU_PENDING - 1))
            continue
        fi
        break
    done
    SISU_WAIT_RC=$rc
}

# Batch role: build the command, run it, handle the preemption / time-limit signal, requeue.
sisu_launch() {
    sisu_build_command || return
    if [[ ${SISU_PRINT_ONLY:-0} == 1 ]]; then
        printf '%q ' "${SISU_SRUN_CMD[@]}"
        echo
        return 0
    fi
    echo "sisu: $SISU_SUMMARY"
    # The node wrapper needs to know how to stop this job kind: sft/dpo checkpoint on SIGUSR1/SIGTERM in the
    # workers; eval/translate/make_pairs stop by terminating torchrun (their output is appended as it goes).
    if [[ $SISU_JOB == sft || $SISU_JOB == dpo ]]; then
        export SISU_STOP_MODE=workers
    else
        export SISU_STOP_MODE=launcher
    fi
    # torchrun versions that read it wait this long for the workers to checkpoint after a SIGTERM before
    # killing them (30 s otherwise; a 34B checkpoint takes longer).
    export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-240}
    trap 'sisu_on_signal USR1' USR1
    trap 'sisu_on_signal TERM' TERM
    # In the background: bash runs traps only between commands, and `wait` returns as soon as one arrives.
    "${SISU_SRUN_CMD[@]}" &
    SISU_STEP_PID=$!
    sisu_wait "$SISU_STEP_PID"
    trap - USR1 TERM
    local rc=$SISU_WAIT_RC
    if [[ $SISU_CAUGHT == USR1 ]]; then
        echo "sisu: job step stopped after SIGUSR1 (exit status $rc)"
        if [[ ${SISU_REQUEUE:-1} == 1 && -n ${SLURM_JOB_ID:-} ]]; then
            # The requeued job runs this script with the same arguments; resume=auto continues from the checkpoint.
            if scontrol requeue "$SLURM_JOB_ID"; then
                echo "sisu: requeued job $SLURM_JOB_ID; the same command runs again and continues where this one stopped"
            else
                echo "sisu: requeue refused; submit the same command again to resume" >&2
            fi
        fi
        return "$rc"
    fi
    if ((rc != 0)); then
        echo "sisu: job step failed with exit status $rc" >&2
    fi
    return "$rc"
}

# Node role ---------------------------------------------------------------------------------------------------

sisu_forward_stop() {
    local sig=$1 pidfile
    if [[ ${SISU_STOP_MODE:-workers} == workers ]]; then
        # The trainer finishes the step, checkpoints and exits 0 on SIGUSR1 and SIGTERM; torchrun then exits 0.
        for pidfile in "$SISU_PID_DIR"/*.pid; do
            if [[ -f $pidfile ]]; then
                kill -s "$sig" "$(<"$pidfile")" 2>/dev/null || true
            fi
        done
    else
        # torchrun handles SIGTERM: it stops the workers and exits without restarting them.
        kill -s TERM "$SISU_TORCHRUN_PID" 2>/dev/null || true
    fi
    return 0
}

sisu_node() {
    local dir
    # Node-local directories the site wants (MIOpen caches on /tmp), created on every node.
    for dir in ${SISU_NODE_DIRS:-}; do
        mkdir -p "$dir"
    done
    SISU_PID_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sisu-node${SLURM_NODEID:-0}.XXXXXX")
    export SISU_PID_DIR
    # torchrun starts with SIGUSR1 ignored (its workers install their own handler); a plain SIGUSR1 would
    # otherwise end torchrun and take the workers down before they checkpoint.
    (
        trap '' USR1
        exec "$@"
    ) &
    SISU_TORCHRUN_PID=$!
    SISU_STEP_PID=$SISU_TORCHRUN_PID
    trap 'SISU_PENDING=$((SISU_PENDING + 1)); sisu_forward_stop USR1' USR1
    trap 'SISU_PENDING=$((SISU_PENDING + 1)); sisu_forward_stop TERM' TERM
    sisu_wait "$SISU_TORCHRUN_PID"
    rm -rf "$SISU_PID_DIR"
    return "$SISU_WAIT_RC"
}

# Worker role -------------------------------------------------------------------------------------------------

sisu_worker() {
    local rank=${LOCAL_RANK:?the worker role runs under torchrun}
    if [[ -n ${SISU_PID_DIR:-} ]]; then
        # exec keeps the pid, so this is the pid of the python process below.
        echo $$ >"$SISU_PID_DIR/$rank.pid"
    fi
    local -a lists
    read -r -a lists <<<"${SISU_CPU_LISTS:-}"
    if ((${#lists[@]} > rank)); then
        if command -v taskset >/dev/null && taskset -c "${lists[$rank]}" true 2>/dev/null; then
            exec taskset -c "${lists[$rank]}" "$@"
        fi
        echo "sisu: local rank $rank: cannot bind to CPUs ${lists[$rank]} here; running unbound" >&2
    fi
    exec "$@"
}

# Run as a script (node and worker roles); sourcing defines the functions only.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    case ${1:-} in
    node)
        shift
        sisu_node "$@"
        ;;
    worker)
        shift
        sisu_worker "$@"
        ;;
    *)
        echo "usage: bash $0 node TORCHRUN... | worker CMD... (sourced by launch/slurm/*.sbatch)" >&2
        exit 2
        ;;
    esac
fi
