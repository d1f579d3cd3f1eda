"""Run a matrix of sisu jobs with one command; runs that already finished are skipped.

    python launch/experiments.py recipes/demo/experiments.yaml             # run what is not finished yet
    python launch/experiments.py recipes/demo/experiments.yaml --dry-run   # validate, print the plan

The matrix file:

    runs:
      - name: sft_100pct                    # unique name
        job: sft                            # sft | dpo | eval | translate | make_pairs
        config: recipes/demo/sft.yaml
        overrides: [output_dir=outputs/demo/table1/sft_100pct]   # key=value, as on the command line
        nproc: 2                            # processes: torchrun --standalone; 1 (default) = plain python
        after: []                           # runs that must finish first
    report: {runs: [eval_0pct, eval_100pct], out: outputs/demo/table1/report.md}   # optional

A run is finished, and skipped, when its output is complete (see FINISHED):
    sft, dpo    OUTPUT_DIR/final/ exists (the export is written under a temporary name and renamed when complete)
    eval        OUTPUT_DIR/<benchmark>/scores.json exists for every benchmark of the config
    translate   OUTPUT_DIR/report.json exists
    make_pairs  OUTPUT_DIR/report.json exists (written last, after pairs.jsonl)
OUTPUT_DIR and the benchmarks are read from the config with the run's overrides applied, as the job sees them.
Every config is loaded and checked before anything runs. Runs execute in dependency order (file order among
the runs that are ready); the first failure stops the matrix with a one-line error, status 1. A run that
exits 0 without finishing (stopped by a signal) counts as failed: run the matrix again and it resumes. The
report (launch/report.py over the named eval runs) is rewritten when any run ran or it is missing. A summary
(ran / skipped / failed / not run, wall time each) is printed at the end. Paths are relative to the directory
you start from, as for the launch scripts (the repository root in all examples).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import yaml  # noqa: E402

from data.errors import SisuError  # noqa: E402
from launch.jobs import JOBS  # noqa: E402
from runtime.config import load_config  # noqa: E402

LAUNCH = Path(__file__).resolve().parent
RUN_KEYS = {"name", "job", "config", "overrides", "nproc", "after"}


class SpecError(SisuError):
    """The matrix file is wrong (reported in one line before anything runs)."""


def _train_finished(cfg: Any) -> tuple[bool, str]:
    final = Path(cfg.output_dir) / "final"
    return final.is_dir(), str(final)


def _eval_finished(cfg: Any) -> tuple[bool, str]:
    scores = [Path(cfg.output_dir) / bench.name / "scores.json" for bench in cfg.benchmarks]
    missing = [str(path) for path in scores if not path.is_file()]
    if missing or not scores:
        return False, ", ".join(missing) or f"{cfg.output_dir} (no benchmarks)"
    return True, f"{len(scores)} x scores.json in {cfg.output_dir}"


def _report_written(cfg: Any) -> tuple[bool, str]:
    report = Path(cfg.output_dir) / "report.json"
    return report.is_file(), str(report)


# job -> function(resolved config) -> (finished, the path(s) that decided it)
FINISHED: dict[str, Callable[[Any], tuple[bool, str]]] = {
    "sft": _train_finished,
    "dpo": _train_finished,
    "eval": _eval_finished,
    "translate": _report_written,
    "make_pairs": _report_written,
}


@dataclasses.dataclass
class Run:
    name: str
    job: str
    config: str
    overrides: list[str]
    nproc: int
    after: list[str]
    cfg: Any = None
    status: str = "not run"
    seconds: float | None = None

    def finished(self) -> tuple[bool, str]:
        return FINISHED[self.job](self.cfg)

    def command(self) -> list[str]:
        script = os.path.relpath(LAUNCH / f"{self.job}.py")
        args = [script, "--config", self.config, *self.overrides]
        if self.nproc == 1:
            return [sys.executable, *args]
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(self.nproc),
            *args,
        ]


def _parse_run(index: int, raw: Any) -> Run:
    where = f"runs[{index}]"
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected a mapping with name, job, config")
    unknown = sorted(set(raw) - RUN_KEYS)
    if unknown:
        raise SpecError(
            f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(RUN_KEYS))}"
        )
    for key in ("name", "job", "config"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise SpecError(f"{where}: '{key}' must be a non-empty string")
    where = f"run '{raw['name']}'"
    if raw["job"] not in JOBS:
        raise SpecError(f"{where}: unknown job '{raw['job']}'; expected one of {', '.join(JOBS)}")
    overrides = raw.get("overrides") or []
    after = raw.get("after") or []
    nproc = raw.get("nproc", 1)
    if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
        raise SpecError(f"{where}: 'overrides' must be a list of key=value strings")
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise SpecError(f"{where}: 'after' must be a list of run names")
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise SpecError(f"{where}: 'nproc' must be an integer >= 1, got {nproc!r}")
    return Run(raw["name"], raw["job"], raw["config"], list(overrides), nproc, list(after))


def dependency_order(runs: list[Run]) -> list[Run]:
    """Runs with every run of their `after` list before them; file order among the ready ones."""
    names = {run.name for run in runs}
    for run in runs:
        for dep in run.after:
            if dep not in names:
                raise SpecError(f"run '{run.name}': 'after' names unknown run '{dep}'")
    done: set[str] = set()
    ordered: list[Run] = []
    pending = list(runs)
    while pending:
        ready = [run for run in pending if all(dep in done for dep in run.after)]
        if not ready:
            cycle = ", ".join(run.name for run in pending)
            raise SpecError(f"the 'after' lists form a cycle among: {cycle}")
        run = ready[0]
        ordered.append(run)
        done.add(run.name)
        pending.remove(run)
    return ordered


def load_matrix(path: str) -> tuple[list[Run], dict | None]:
    """Parse and check the matrix file and every run's config; returns the runs in execution order."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except OSError as exc:
        raise SpecError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("runs"), list) or not raw["runs"]:
        raise SpecError(f"{path}: expected a mapping with a non-empty 'runs' list")
    unknown = sorted(set(raw) - {"runs", "report"})
    if unknown:
        raise SpecError(f"{path}: unknown top-level key(s) {', '.join(unknown)}; expected runs, report")
    runs = [_parse_run(i, item) for i, item in enumerate(raw["runs"])]
    seen: set[str] = set()
    for run in runs:
        if run.name in seen:
            raise SpecError(f"run name '{run.name}' is used twice")
        seen.add(run.name)
    ordered = dependency_order(runs)
    for run in ordered:
        try:
            run.cfg = load_config(JOBS[run.job], run.config, run.overrides)
        except SisuError as exc:
            raise SpecError(f"run '{run.name}': {str(exc).strip().splitlines()[0]}") from None
    report = raw.get("report")
    if report is not None:
        if (
            not isinstance(report, dict)
            or set(report) != {"runs", "out"}
            or not isinstance(report["runs"], list)
        ):
            raise SpecError(f"{path}: 'report' must be {{runs: [eval run names], out: path}}")
        by_name = {run.name: run for run in runs}
        for name in report["runs"]:
            if name not in by_name or by_name[name].job != "eval":
                raise SpecError(f"report: '{name}' is not an eval run of this matrix")
    return ordered, report


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(value, 60)
    return f"{int(minutes)}m{seconds:04.1f}s" if minutes else f"{seconds:.1f}s"


def print_summary(rows: list[tuple[str, str, str, float | None]], total: float) -> None:
    width = max(len(row[0]) for row in rows)
    print("\nsummary:")
    for name, job, status, seconds in rows:
        print(f"  {name:<{width}}  {job:<9}  {status:<8}  {_seconds(seconds)}")
    counts = {s: sum(1 for row in rows if row[2] == s) for s in ("ran", "skipped", "failed", "not run")}
    print(
        f"  {counts['ran']} ran, {counts['skipped']} skipped, {counts['failed']} failed, "
        f"{counts['not run']} not run; {_seconds(total)} in all"
    )


def _run_report(report: dict, runs: list[Run], anything_ran: bool) -> tuple[str, float | None, int]:
    out = Path(report["out"])
    if out.is_file() and not anything_ran:
        print(f"[report] skipped: {out} is up to date")
        return "skipped", None, 0
    by_name = {run.name: run for run in runs}
    dirs = [by_name[name].cfg.output_dir for name in report["runs"]]
    command = [sys.executable, os.path.relpath(LAUNCH / "report.py"), *dirs, "--out", str(out)]
    command += ["--names", *report["runs"]]
    print(f"[report] running: {shlex.join(command)}", flush=True)
    start = time.monotonic()
    code = subprocess.run(command).returncode
    return ("ran" if code == 0 else "failed"), time.monotonic() - start, code


def _run_child(command: list[str]) -> tuple[int, bool]:
    """Run a job in the foreground; returns (exit status, interrupted by Ctrl-C)."""
    proc = subprocess.Popen(command)
    try:
        return proc.wait(), False
    except KeyboardInterrupt:
        # The terminal sent the same SIGINT to the job: give it time to stop its workers (torchrun does), and
        # kill it only on a second Ctrl-C or after a minute.
        try:
            return proc.wait(timeout=60), True
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            proc.kill()
            return proc.wait(), True


def execute(runs: list[Run], report: dict | None) -> int:
    start = time.monotonic()
    failure: str | None = None
    for index, run in enumerate(runs, 1):
        tag = f"[{index}/{len(runs)}] {run.name}"
        done, why = run.finished()
        if done:
            run.status = "skipped"
            print(f"{tag}: skipped (finished: {why})", flush=True)
            continue
        command = run.command()
        print(f"{tag}: running: {shlex.join(command)}", flush=True)
        begin = time.monotonic()
        code, interrupted = _run_child(command)
        run.seconds = time.monotonic() - begin
        if interrupted:
            run.status = "failed"
            failure = f"run '{run.name}' interrupted (exit status {code}); rerun to continue"
            break
        if code != 0:
            run.status = "failed"
            failure = f"run '{run.name}' failed with exit status {code}: {shlex.join(command)}"
            break
        done, why = run.finished()
        if not done:
            run.status = "failed"
            failure = f"run '{run.name}' exited 0 but is not finished ({why} missing; stopped early?); rerun to resume"
            break
        run.status = "ran"
        print(f"{tag}: done in {_seconds(run.seconds)}", flush=True)
    rows = [(run.name, run.job, run.status, run.seconds) for run in runs]
    if report is not None:
        if failure is None:
            status, seconds, code = _run_report(report, runs, any(run.status == "ran" for run in runs))
            if code != 0:
                failure = f"report failed with exit status {code}"
            rows.append(("report", "report", status, seconds))
        else:
            rows.append(("report", "report", "not run", None))
    print_summary(rows, time.monotonic() - start)
    if failure is not None:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    return 0


def dry_run(runs: list[Run], report: dict | None) -> None:
    for index, run in enumerate(runs, 1):
        done, why = run.finished()
        state = f"finished ({why}), would skip" if done else f"would run: {shlex.join(run.command())}"
        print(f"[{index}/{len(runs)}] {run.name}: {state}")
    if report is not None:
        print(f"[report] {report['out']} from {', '.join(report['runs'])}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="launch/experiments.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("matrix", help="YAML file with runs: [...] and an optional report")
    parser.add_argument(
        "--dry-run", action="store_true", help="check everything, print the plan, run nothing"
    )
    args = parser.parse_args(argv)
    try:
        runs, report = load_matrix(args.matrix)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        dry_run(runs, report)
        return 0
    return execute(runs, report)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
