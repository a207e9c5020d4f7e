"""``harness doctor``: can each backend use the GPU here, and if not, exactly why and what to do.

Exit status (for scripts and CI):
  0  every backend asked about is gpu-ready
  1  at least one mismatch: something in the CUDA stack is wrong and fixable (driver, libraries, build)
  3  not GPU-ready but nothing to fix in the software: cpu-only (no GPU or driver on this machine, GPUs
     hidden by CUDA_VISIBLE_DEVICES, a deliberate CPU-only build), a backend given with --backend is not
     installed, or a probe did not answer within --timeout (unknown). On a machine without a GPU the doctor
     therefore exits 3 unless a backend is also broken (1); --allow-cpu turns cpu-only into success, so CI
     on CPU machines can still fail on real mismatches.
  2  bad usage (an unknown backend name, a negative --timeout)
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys

from harness.doctor import (
    PROBE_TIMEOUT_S,
    available_probes,
    combined_exit_status,
    doctor_report,
    exit_status,
    format_report,
    format_reports,
)
from harness.core.device import Device
from harness.core.errors import HarnessError, did_you_mean

EPILOG = f"""\
Examples:
  harness doctor                      every backend with a probe; exits 3 on a machine without a GPU
  harness doctor --backend tf2 --backend torch
  harness doctor --json > doctor.json the full report (what `harness run` writes into env.json)
  harness doctor --device cuda        jobs will ask for the GPU: a CPU-only build is then a mismatch
  harness doctor --allow-cpu          CI on a CPU machine: fail only on real mismatches
  harness doctor --live               import every framework even without a GPU (slower, shows import errors)
  harness doctor --timeout 600        a slow machine: 10 minutes per framework probe (0 = no limit)
  harness doctor --env tf-gpu         the verdicts inside environment tf-gpu (see harness env)
  harness doctor --all-envs           the default environment and every `harness env` one, one table
  harness doctor --cluster --address auto   every node of a Ray cluster, one table (docs/ray.md)

A probe that does not answer within --timeout (default {PROBE_TIMEOUT_S:g} s) is reported as `unknown`, not as
a mismatch. Details: docs/doctor.md.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="GPU readiness per backend; CUDA/cuDNN/driver/build mismatches explained",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backend", action="append", metavar="NAME",
                   help="check only this backend (repeatable); default: every backend with a probe")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--device", default=None,
                   help="the device your jobs will ask for (gpu, cuda...): a CPU-only build then counts as a "
                        "mismatch rather than cpu-only")
    p.add_argument("--allow-cpu", action="store_true", help="exit 0 when backends are cpu-only (no mismatch)")
    p.add_argument("--live", action="store_true",
                   help="import every framework even when no GPU is visible (slower; shows import errors)")
    p.add_argument("--timeout", type=float, default=PROBE_TIMEOUT_S, metavar="SECONDS",
                   help=f"seconds each framework probe may take (default {PROBE_TIMEOUT_S:g}; 0 = no limit)")
    p.add_argument("--env", action="append", metavar="NAME",
                   help="run the doctor inside this environment (repeatable; 'default' = this one); "
                        "see `harness env`")
    p.add_argument("--all-envs", action="store_true",
                   help="the default environment and every environment `harness env list` shows, in one table")
    # ray: every node of a Ray cluster
    p.add_argument("--cluster", action="store_true",
                   help="run the doctor on every node of a Ray cluster (one table, a label per node); docs/ray.md")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="--cluster: the cluster (auto, HOST:6379); default: a private local Ray (this machine)")
    p.set_defaults(func=run)


def _check_timeout(timeout: float) -> None:
    if math.isnan(timeout) or timeout < 0 or math.isinf(timeout):
        raise HarnessError(
            f"--timeout {timeout:g} is not a number of seconds a probe may take",
            f"give a number >= 0, e.g. --timeout 300 (0 = no limit; default {PROBE_TIMEOUT_S:g})",
        )


def run(args: argparse.Namespace) -> int:
    if args.device:  # checked once here: every verdict then reads the parsed device
        try:
            args.device = Device(args.device)
        except HarnessError as exc:
            raise HarnessError(f"--device {args.device}: {exc.problem}", exc.fix) from None
    _check_timeout(args.timeout)
    probes = available_probes()
    for name in args.backend or []:
        if name not in probes:
            raise HarnessError(
                f"no doctor probe for backend {name!r}.{did_you_mean(name, probes)}",
                f"choose from: {', '.join(sorted(probes)) or '(none registered: pip install -e .)'}",
            )
    if args.cluster or args.address:
        return _run_on_cluster(args)
    if args.env or args.all_envs:
        return _run_in_environments(args)
    report = doctor_report(args.backend, device=args.device, timeout=args.timeout, live=args.live or None)
    code = exit_status(report, allow_cpu=args.allow_cpu)
    report["exit_status"] = code
    if args.json:
        json.dump(report, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(format_report(report, width=_width()))
    return code


def _width() -> int:
    return min(shutil.get_terminal_size((100, 24)).columns, 100)


def _run_in_environments(args: argparse.Namespace) -> int:
    """One report per environment (the doctor run inside each), printed as one table."""
    from harness.doctor.environments import env_doctor_report, error_report
    from harness.envs import DEFAULT_ENV, EnvStore, ensure

    store = EnvStore()
    names = list(dict.fromkeys(([DEFAULT_ENV, *store.names()] if args.all_envs else []) + (args.env or [])))
    reports: dict[str, dict] = {}
    for name in names:
        if name == DEFAULT_ENV:
            report = doctor_report(args.backend, device=args.device, timeout=args.timeout, live=args.live or None)
        else:
            try:
                interpreter = ensure(name, store).interpreter
            except HarnessError as exc:
                if not args.all_envs:
                    raise  # the one environment asked for: a clear error, exit 2
                reports[name] = error_report(name, exc.problem, exc.fix)
                continue
            report = env_doctor_report(interpreter, args.backend, args.device, args.timeout, args.live or None)
        if "system" in report:
            report["exit_status"] = exit_status(report, allow_cpu=args.allow_cpu)
        reports[name] = report
    code = combined_exit_status(int(r.get("exit_status", 3)) for r in reports.values())
    if args.json:
        json.dump({"environments": reports, "exit_status": code}, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(format_reports(reports, width=_width()))
    return code


def _run_on_cluster(args: argparse.Namespace) -> int:
    """ray: one report per node of a Ray cluster (the doctor run on each), printed as one table."""
    from harness.execution.ray import cluster_doctor

    if args.env or args.all_envs:
        raise HarnessError("--cluster runs the doctor in each node's default environment; --env/--all-envs "
                           "cannot be combined with it", "drop --env/--all-envs, or run them on a node")
    if not args.cluster:
        raise HarnessError("--address is the Ray cluster of --cluster", "add --cluster")
    reports = cluster_doctor(args.address, args.backend, device=args.device, timeout=args.timeout,
                             live=args.live or None, allow_cpu=args.allow_cpu)
    if not reports:
        raise HarnessError(f"the Ray cluster at {args.address or 'local'} has no alive node",
                           "check it with `ray status`")
    code = combined_exit_status(int(r.get("exit_status", 3)) for r in reports.values())
    if args.json:
        json.dump({"nodes": reports, "exit_status": code}, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        from harness.execution.ray.doctor import short_labels

        shown, legend = short_labels(reports)
        for line in legend:
            print(line)
        print(format_reports(shown, width=_width()))
    return code
