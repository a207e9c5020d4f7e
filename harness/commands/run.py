"""``harness run``: run a comparison (flags, a suite file, or the default suite) into a results folder."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from harness.core.device import DEVICE_FORMS
from harness.core.errors import HarnessError
from harness.execution.choose import EXECUTORS
from harness.core.jobs import JobResult, JobSpec
from harness.core.policy import PostprocessPolicy
from harness.execution.process import DEFAULT_TIMEOUT_S
from harness.core.settings import oversubscription_note, parse_classes, parse_options
from harness.suites.overrides import RunOverrides
from harness.execution.scenarios.cli import SCENARIOS, scenario_line, scenario_overrides, scenario_words


def _default(name: str) -> object:
    """A JobSpec field's default, for the help text (typed once, in JobSpec)."""
    return next(f.default for f in fields(JobSpec) if f.name == name)


def _backend_names() -> list[str]:
    """The registered backends in report order (entry points: no framework is imported for the help)."""
    from harness.core.registry import BACKEND_ORDER, available_backends, backend_order_key

    return sorted(available_backends(), key=backend_order_key) or list(BACKEND_ORDER)


def _policy(name: str) -> object:
    return getattr(PostprocessPolicy(), name)


EPILOG = """\
Examples:
  harness run                                     default suite: reference SSD, every installed backend, PETS
  harness run --backend tf1 --video pets09-s2l1 --frames 200
  harness run --backend tf1 --model path/to/frozen_inference_graph.pb --video my.mp4 --out results/x
  harness run --backend torch --device gpu --strict-device     fail (don't fall back) if the GPU isn't used
  harness run --backend tf1 --backend opencv --preprocess shared   identical input pixels for both
  harness run -b tf1 -v pets09-s2l1 -v tud-campus -d cpu -d gpu   a job for each video x device
  harness run -b openvino -p fp32,int8 --frames 100   precision variants, int8 held to fp32's AP50 (floor)
  harness run -b onnxruntime --scenario offline --batch 1,4,8   throughput per batch size
  harness run -b opencv --scenario server --qps 10,20 --latency-bound 50ms   the largest QPS under a p99 bound
  harness run suite.toml --score-threshold 0.5    a flag beats the suite's value, for every job
  harness run suite.toml --list                   show the jobs a suite expands to, run nothing
  harness run --resume results/20261122-101500    finish an interrupted run
  harness run -b opencv --env default --env ocv4  one backend in two environments, side by side
  harness run -b tf1 --python /opt/tf220/bin/python   a job in an existing interpreter
  harness run suite.toml --executor ray           each job a Ray task (a local Ray, started and stopped)
  harness run suite.toml --executor ray --address auto   an existing cluster (docs/ray.md)

Videos and models are files or asset names (see `harness assets list`); with HARNESS_ASSETS set to a folder
laid out like shared/assets, nothing is downloaded.
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a comparison and write a results folder",
        description="Run detectors on the same frames and measure placement, latency, FPS, memory, accuracy "
        "and agreement. With no suite and no --backend, runs the default suite.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("suite", nargs="?", help="a suite file (TOML); omit for the default suite or --backend jobs")
    # Every flag a suite can also set defaults to None: "not given" is then known, so a flag given with any
    # value (its documented default included) beats the suite, and the real defaults live in JobSpec and
    # PostprocessPolicy alone.
    p.add_argument("--backend", "-b", action="append", default=None, help="backend name (repeat for several): "
                   f"{', '.join(_backend_names())}, or package.module:Class")
    p.add_argument("--model", "-m", action="append", default=None,
                   help="model file/folder or asset name (default: each backend's reference SSD; repeatable)")
    p.add_argument("--video", "--source", "-v", dest="video", action="append", default=None,
                   help="video file, image folder or asset name (default: pets09-s2l1; repeatable)")
    p.add_argument("--device", "-d", action="append", default=None,
                   help=f"{', '.join(DEVICE_FORMS[:5])} or a backend target ({', '.join(DEVICE_FORMS[5:])}); "
                   "default cpu; repeatable")
    p.add_argument("--frames", "-n", type=int, default=None, help="at most this many frames (default: all)")
    p.add_argument("--warmup", type=int, default=None,
                   help=f"warm-up inferences on the first frame, not counted ({_default('warmup')})")
    p.add_argument("--preprocess", choices=("native", "shared"), default=None,
                   help="native: each backend resizes as its users do; shared: the harness resizes once and every "
                   "backend gets identical pixels (default: native for --backend runs, shared for the default suite)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for the framework (default: its own)")
    p.add_argument("--opt", action="append", default=None, metavar="KEY=VALUE",
                   help="backend option, e.g. input=image_tensor:0, target=opencl, arch=ssd300_vgg16 (repeatable)")
    p.add_argument("--score-threshold", type=float, default=None,
                   help=f"comparison policy: score threshold for agreement/drawing ({_policy('score_threshold')}); "
                   "AP uses all saved boxes")
    p.add_argument("--record-threshold", type=float, default=None,
                   help=f"lowest score saved in detections ({_policy('record_threshold')})")
    p.add_argument("--top-k", type=int, default=None, help=f"at most this many boxes per frame ({_policy('top_k')})")
    p.add_argument("--classes", default=None, help="comma-separated class ids to keep (default: all)")
    # scenarios: how frames reach the model; comma lists are sweeps (one job per value)
    g = p.add_argument_group("scenarios", "how frames reach the model (docs/scenarios.md); a comma list makes one "
                             "job per value")
    g.add_argument("--scenario", choices=SCENARIOS, default=None,
                   help="single-stream (default): one frame at a time, as fast as possible; offline: batches; "
                   "multi-stream: N sources at once; realtime: frames released at the source's FPS; server: "
                   "Poisson arrivals at a QPS")
    g.add_argument("--batch", default=None, metavar="N[,N...]", help="offline: frames per inference call, e.g. 1,2,4,8")
    g.add_argument("--streams", default=None, metavar="N[,N...]", help="multi-stream: sources decoded at once")
    g.add_argument("--instances", type=int, default=None,
                   help="multi-stream, server: model instances (multi-stream: 1 or one per stream; default 1)")
    g.add_argument("--fps", default=None, metavar="F[,F...]",
                   help="realtime: release rate (default: the source's); multi-stream: the per-stream rate to serve")
    g.add_argument("--queue", type=int, default=None,
                   help="realtime: frames that may wait while the detector is busy (default 0: drop them)")
    g.add_argument("--qps", default=None, metavar="Q[,Q...]", help="server: mean queries per second, e.g. 10,20,40")
    g.add_argument("--latency-bound", default=None, metavar="T",
                   help="server: the p99 end-to-end latency each QPS must stay under, e.g. 50ms")
    g.add_argument("--min-duration", default=None, metavar="T",
                   help="loop the source until the timed part lasted this long, e.g. 60s (every scenario)")
    g.add_argument("--min-frames", type=int, default=None, help="loop the source until this many frames were timed")
    g.add_argument("--loadgen", action="store_true", default=None,
                   help="single-stream, offline, server: MLPerf LoadGen issues the queries from frames preloaded "
                   "into memory, and the row gets its figures and VALID/INVALID verdict (docs/scenarios.md)")
    g.add_argument("--seed", type=int, default=None,
                   help="server: the arrival clock's seed; --loadgen: LoadGen's QSL, sample-index and schedule seeds "
                   "(default 0: the same arrivals and samples every run)")
    p.add_argument("--out", "-o", type=Path, default=None, help="results folder (default: results/<timestamp>)")
    p.add_argument("--resume", type=Path, default=None, metavar="DIR",
                   help="continue an interrupted run in DIR: finished jobs are kept, the rest rerun")
    p.add_argument("--strict-device", action="store_true", default=None,
                   help="a GPU request that ends on the CPU fails the job instead of being marked 'fallback'")
    p.add_argument("--timeout", type=float, default=None,
                   help=f"per-job timeout in seconds, process and ray executors (default {DEFAULT_TIMEOUT_S:g}; "
                   "0 = none): a job past it is killed and recorded as 'timeout', and the suite goes on")
    p.add_argument("--executor", choices=EXECUTORS, default="process",
                   help="process: each job in a fresh process (default, survives crashes); inline: this process; "
                   "ray: each job a Ray task on a node of a cluster (docs/ray.md)")
    # ray: where the Ray executor runs jobs
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="--executor ray: the cluster to use (auto, or HEAD:6379 of its head node); "
                   "default: a private local Ray on 127.0.0.1, stopped at the end")
    p.add_argument("--jobs-per-node", type=int, default=None, metavar="N",
                   help="--executor ray: jobs a node runs at once (default 1, so jobs never share a machine's "
                   "cores while measured; 0 = as many as Ray's resources allow)")
    p.add_argument("--node-retries", type=int, default=None, metavar="N",
                   help="--executor ray: how often a job whose node died is retried on another node (default 1)")
    p.add_argument("--list", action="store_true", help="print the jobs the run expands to, run nothing")
    p.add_argument("--no-report", action="store_true", help="skip plots and report.html")
    p.add_argument("--save-video", action="store_true", help="also write an annotated side-by-side video")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    # envs-b: where the jobs run, an axis like --device (docs/environments.md)
    p.add_argument("--env", action="append", default=None, metavar="NAME",
                   help="run the jobs in this Python environment (repeatable: one job per environment); 'default' "
                   "is the running one, 'gpu-layout' picks tf-gpu/torch-gpu/ort-gpu per backend when built; "
                   "create others with `harness env create`")
    p.add_argument("--python", action="append", default=None, metavar="PATH",
                   help="run the jobs with this existing interpreter (repeatable; joins the --env axis); it must "
                   "import harness: see `harness env check PATH`")
    p.add_argument("--precision", "-p", action="append", default=None, metavar="P[,P...]",
                   help="precision(s) to run each job at: fp32, fp16, bf16, int8 or auto (the framework's own "
                   "default); comma-separated or repeated, a matrix axis (default: not asked, fp32 where the harness "
                   "chooses). The row records the precision the framework really ran (docs/precision.md)")
    p.add_argument("--strict-precision", action="store_true", default=None,
                   help="a job whose framework ran another precision than asked fails instead of being marked "
                   "'fallback'")
    p.add_argument("--accuracy-floor", type=float, default=None, metavar="SHARE",
                   help="a precision variant whose AP50 is below SHARE x the same backend's fp32 AP50 is marked "
                   "below-floor (default 0.99)")
    p.set_defaults(func=run)


def overrides_from_args(args: argparse.Namespace) -> RunOverrides:
    """What the user typed, as the typed object the suite module reads (checked there: ranges, devices)."""
    return RunOverrides(
        backends=tuple(args.backend or ()),
        models=tuple(args.model or ()),
        videos=tuple(args.video or ()),
        devices=tuple(args.device or ()),
        frames=args.frames,
        warmup=args.warmup,
        preprocess=args.preprocess,
        threads=args.threads,
        options=parse_options(args.opt or ()),
        score_threshold=args.score_threshold,
        record_threshold=args.record_threshold,
        top_k=args.top_k,
        classes=parse_classes(args.classes) if args.classes is not None else None,
        strict_device=args.strict_device,
        timeout_s=args.timeout,
        envs=tuple(args.env or ()),
        pythons=tuple(args.python or ()),
        **scenario_overrides(args),
        precisions=_precision_args(args),
        strict_precision=args.strict_precision,
    )


def _precision_args(args: argparse.Namespace) -> tuple[str, ...]:
    """``--precision fp32,int8 --precision bf16`` as the precision axis, with ``--accuracy-floor`` checked
    here too, before any job runs."""
    from harness.core.precision import check_accuracy_floor, parse_precisions

    if getattr(args, "accuracy_floor", None) is not None:
        check_accuracy_floor(args.accuracy_floor)
    return parse_precisions(getattr(args, "precision", None) or ())


def expand_jobs(args: argparse.Namespace) -> list[JobSpec]:
    """The jobs of this run: a suite file, ``--backend`` flags, or the default suite, with the flags on top."""
    from harness.suites import expand as suite_mod

    overrides = overrides_from_args(args)
    if args.suite:
        jobs = suite_mod.load_suite(Path(args.suite), overrides)
    elif overrides.backends:
        jobs = suite_mod.jobs_from_flags(overrides)
        _check_unique(jobs)
    else:
        jobs = suite_mod.default_suite(overrides)
    jobs = _route_cli_options(jobs, args.opt or [])
    jobs = _route_endpoints(jobs)
    suite_mod.check_backend_options(jobs)
    _warn_threads(jobs)
    return jobs


def _route_cli_options(jobs: list[JobSpec], pairs: list[str]) -> list[JobSpec]:
    """An ``--opt`` given next to several backends goes to the jobs whose backend reads it (each backend
    declares its options, and the runner refuses unknown ones); an option no job's backend reads is an error."""
    import dataclasses

    from harness.core.registry import backend_class

    given = parse_options(pairs)
    if not given:
        return jobs
    routed, used = [], set()
    for job in jobs:
        try:
            known = backend_class(job.backend).known_options
        except HarnessError:  # not importable: the runner reports that, with every option left as given
            known = given
        used.update(k for k in given if k in known)
        routed.append(dataclasses.replace(job, options={k: v for k, v in job.options.items()
                                                        if k not in given or k in known}))
    unused = [k for k in given if k not in used]
    if unused:
        backends = sorted({j.backend for j in jobs})
        raise HarnessError(f"no backend of this run reads --opt {', '.join(unused)} ({', '.join(backends)})",
                           "check the spelling; every backend's options are listed in docs/backend-options.md")
    return routed


def is_endpoint(model: str | None) -> bool:
    """A model given as a server's URL (the v2 client's), not a file or asset name."""
    return str(model or "").lower().startswith(("http://", "https://", "grpc://"))


def _route_endpoints(jobs: list[JobSpec]) -> list[JobSpec]:
    """``-b onnxruntime -b v2 --model http://.../v2/models/ssd``: the URL is the v2 job's model, and the
    in-process backend runs its own default model beside it (the served job's twin), instead of failing to
    open a URL as a file. A client job given a file while it also has a URL is left out."""
    import dataclasses

    from harness.core.registry import backend_class

    def remote(backend: str) -> bool:
        try:
            return bool(backend_class(backend).remote)
        except HarnessError:
            return False

    with_url = {j.backend for j in jobs if is_endpoint(j.model) and remote(j.backend)}
    routed, ids = [], set()
    for job in jobs:
        if is_endpoint(job.model) and not remote(job.backend):
            job = dataclasses.replace(job, model=None, job_id="")  # the id names its own model
        elif remote(job.backend) and not is_endpoint(job.model) and job.backend in with_url:
            continue
        if job.job_id not in ids:
            ids.add(job.job_id)
            routed.append(job)
    return routed


def _check_unique(jobs: list[JobSpec]) -> None:
    """Two flag values that make one job id (videos of the same name in two folders) would overwrite each
    other's results: say so before anything runs."""
    seen: dict[str, JobSpec] = {}
    for job in jobs:
        other = seen.setdefault(job.job_id, job)
        if other is not job:
            raise HarnessError(
                f"two jobs would share the id {job.job_id}: video {other.source} / {job.source}, "
                f"model {other.model or 'reference'} / {job.model or 'reference'}",
                "give each --video/--model a different file name, or list them in a suite file with a tag",
            )


def _warn_threads(jobs: list[JobSpec]) -> None:
    """Say once per thread count when jobs ask for more threads than this machine has CPUs (each job's
    row records it too)."""
    for threads in sorted({j.threads for j in jobs if j.threads is not None}):
        note = oversubscription_note(threads)
        if note:
            print(f"warning: {note}", file=sys.stderr)


def _settings_text(job: JobSpec) -> str:
    """A job's effective settings, defaults included, as ``key=value`` words."""
    policy = job.policy
    if job.timeout_s is not None:
        timeout = f"{job.timeout_s:g}s" if job.timeout_s > 0 else "none"
    else:  # the process executor's; --executor inline has none
        timeout = f"{DEFAULT_TIMEOUT_S:g}s"
    words = {
        "frames": "all" if job.frames is None else job.frames,
        "warmup": job.warmup,
        "preprocess": job.preprocess,
        "threads": "framework-default" if job.threads is None else job.threads,
        "score_threshold": f"{policy.score_threshold:g}",
        "record_threshold": f"{policy.record_threshold:g}",
        "top_k": "none" if policy.top_k is None else policy.top_k,
        "classes": "all" if policy.classes is None else ",".join(map(str, policy.classes)),
        "strict_device": "yes" if job.strict_device else "no",
        "timeout": timeout,
        "precision": job.precision or "not-asked",
        "strict_precision": "yes" if job.strict_precision else "no",
    }
    words.update(scenario_words(job))
    text = " ".join(f"{k}={v}" for k, v in words.items())
    if job.options:
        text += " options: " + " ".join(f"{k}={v}" for k, v in job.options.items())
    return text


def _print_jobs(jobs: list[JobSpec]) -> None:
    print(f"{len(jobs)} job(s):")
    for j in jobs:
        where = f" python={j.python}" if j.python else (f" env={j.env}" if j.env != "default" else "")  # envs-b
        if j.machine:
            where += f" machine={j.machine} ({', '.join(f'{k}={v:g}' for k, v in j.resources.items())})"
        print(f"  {j.job_id}\n    backend={j.backend} model={j.model or 'reference'} video={j.source} "
              f"device={j.device}{where}\n    {_settings_text(j)}")


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class _Progress:
    """One job's progress: ``[3/7] job: loading opencv ...``, ``warming up ...``, then, from the first timed
    frame on, a bar whose rate and ETA count timed frames only (load and warm-up are phases, not frames).

    On a terminal the phases and the bar share one redrawn line (tqdm); piped or redirected output gets one
    plain line per job, its phases appended as they come, and no carriage returns.
    """

    def __init__(self, job: JobSpec, index: int, count: int, quiet: bool, tty: bool | None = None) -> None:
        self.prefix = f"[{index}/{count}] {job.job_id}"
        self.quiet = quiet
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.bar: Any = None
        self.phase = ""
        self.open_line = False  # non-TTY: a line was begun and not yet ended
        self.timed_at: float | None = None
        if quiet:
            return
        if self.tty:
            from tqdm import tqdm

            self.desc = f"[{index}/{count}] {job.job_id[:44]}"
            self.bar = tqdm(desc=f"{self.desc}: starting ...", unit="frame", dynamic_ncols=True, leave=False,
                            file=sys.stderr, bar_format="{desc}")
        else:
            self._write(f"{self.prefix}:")

    def _write(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()
        self.open_line = True

    def __call__(self, done: int, total: int | None, fps: float, phase: str = "") -> None:
        if self.quiet:
            return
        if phase and phase != self.phase:
            self.phase = phase
            if phase == "timing":
                self.timed_at = time.perf_counter()
            if self.bar is not None:
                if phase == "timing":  # the bar and its clock start at the first timed frame
                    self.bar.bar_format = ("{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                           "[{elapsed}<{remaining}{postfix}]" if total else
                                           "{desc}: {n_fmt} [{elapsed}{postfix}]")
                    self.bar.set_description_str(self.desc, refresh=False)
                    self.bar.reset(total=total)
                else:
                    self.bar.set_description_str(f"{self.desc}: {phase} ...")
            else:
                self._write(f" {phase}" + (f" {total} frames" if phase == "timing" and total else "") + " ...")
            return
        if self.bar is None or self.timed_at is None:
            return
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.set_postfix_str(f"{fps:.1f} FPS", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.open_line:
            timed = f" {time.perf_counter() - self.timed_at:.1f} s timed" if self.timed_at is not None else ""
            sys.stderr.write(f" done{timed}\n")
            sys.stderr.flush()
            self.open_line = False


def _line(result: JobResult) -> str:
    s = result.summary
    if result.status in ("ok", "fallback"):
        text = (f"{result.spec.job_id}: {s['frames']} frames, p50 {s['p50_ms']:.1f} ms, p90 {s['p90_ms']:.1f} ms, "
                f"model {s['model_fps']:.1f} FPS, pipeline {s['pipeline_fps']:.1f} FPS, on {s['device_actual']}")
        if s.get("executor") == "ray":  # which machine of the cluster
            text += f" of {s.get('hostname')}/{str(s.get('node', ''))[:8]}"
        text += scenario_line(s)  # scenarios: the scenario's own figures and the validity
        if result.status == "fallback":
            text = "FALLBACK " + text + f"\n    !! {result.cause}"
        return text
    return f"{result.status.upper()} {result.spec.job_id}: {result.cause}"


def _planned_jobs(args: argparse.Namespace) -> tuple[list[JobSpec], Path]:
    """The jobs of this run and its folder: expanded from the flags/suite, or read back for ``--resume``."""
    if args.resume:
        from harness.suites.checks import check_resume_flags
        from harness.results import load_run

        check_resume_flags(args)

        # relative source/model paths come back absolute, as the interrupted run resolved them
        return load_run(args.resume).resume_specs(), args.resume
    return expand_jobs(args), args.out or Path("results") / time.strftime("%Y%m%d-%H%M%S")


def run(args: argparse.Namespace) -> int:
    from harness.results import ResultsWriter

    jobs, out = _planned_jobs(args)
    if not jobs:
        raise HarnessError("the run expands to no jobs (empty matrix)", "name at least one backend, source and device")
    if args.list:
        _print_jobs(jobs)
        return 0

    ids = [j.job_id for j in jobs]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise HarnessError(f"two jobs share an id: {', '.join(sorted(dupes))}", "make the suite entries differ")

    _check_executor(jobs, args)
    from harness.data.assets.preflight import require_assets, require_backends_ready
    from harness.suites.checks import check_names, check_plan

    check_names(jobs)  # unknown backends, mistyped asset names, missing paths: before anything is fetched
    # every named file the jobs need, fetched or made once, or one error before any job; said aloud, since a
    # download or a generated file can take a while before the first job line
    if not args.quiet:  # a line of its own: a generated file says so while it is made
        print(f"preflight: finding the models, videos and ground truth of {len(jobs)} job(s)", file=sys.stderr,
              flush=True)
    require_assets(jobs)
    require_backends_ready(jobs)  # a served model's endpoint answers and is ready, or one error before any job
    check_plan(jobs, DEFAULT_TIMEOUT_S if args.executor != "inline" else None)  # calibration, memory, duration
    # envs-b: every environment the jobs run in, built or reused once (locks held), before any job
    from harness.envs.prepare import prepare_envs
    from harness.suites.expand import suite_envs

    envs = prepare_envs(jobs, suite_envs(None if args.resume else args.suite), executor=args.executor)
    with envs, ResultsWriter(out) as writer:  # holds the folder's lock until the report is written
        interrupted = _run_jobs(jobs, out, writer, args, envs)
        _post_process(out, writer, args)
        rows = list(writer.rows.values())
    if interrupted:
        return 130
    fallbacks = [r for r in rows if r.get("status") == "fallback"]
    if fallbacks:
        print("\n!! FALLBACK: these jobs did not run as asked (a GPU request that ran on the CPU, or another "
              "precision than requested):", file=sys.stderr)
        for r in fallbacks:
            print(f"!!   {r['job_id']}: {_fell_back(r)}{r.get('cause', '')}", file=sys.stderr)
    failed = [r for r in rows if r.get("status") not in ("ok", "fallback")]
    _print_summary(out, rows)
    print(f"\nresults in {out}" + (f"  (report: {out / 'report.html'})" if (out / "report.html").exists() else ""))
    return 1 if failed else 0


def _fell_back(row: dict) -> str:
    """What a FALLBACK row did not get, from its columns: ``device gpu -> cpu; precision bf16 -> fp32: ``."""
    said = [f"{what} {row.get(asked)} -> {row.get(ran)}" for what, flag, asked, ran in (
        ("device", "device_fallback", "device_requested", "device_actual"),
        ("precision", "precision_fallback", "precision_requested", "precision"))
        if str(row.get(flag)).strip().lower() == "true"]
    return "; ".join(said) + ": " if said else ""


def _print_summary(out: Path, rows: list[dict[str, Any]]) -> None:
    """The ranked summary (the run's answer) on stdout, read back from the folder so that AP50, agreement and
    the floor verdicts are in it; the rows in memory when the folder can't be read."""
    from harness.report.ranked import format_summary

    try:
        from harness.report.load import load_results

        results = load_results(out)
        runs, agreement = results.runs, results.agreement
        min_duration = {j: float(job.spec.scenario.min_duration_s) for j, job in results.jobs.items()
                        if job.spec.scenario.min_duration_s}
    except Exception:  # noqa: BLE001 - the summary must never cost the run its exit status
        runs, agreement, min_duration = rows, None, {}
    try:
        print("\n" + format_summary(runs, agreement, min_duration=min_duration))
    except Exception as exc:  # noqa: BLE001
        print(f"warning: the ranked summary could not be printed: {type(exc).__name__}: {exc}", file=sys.stderr)


def _check_executor(jobs: list[JobSpec], args: argparse.Namespace) -> None:
    """Jobs that name a machine can only be placed by the Ray executor: say so before anything runs, rather
    than measure them on this machine under another machine's name. The Ray flags need the Ray executor."""
    ray_flags = (("--jobs-per-node", getattr(args, "jobs_per_node", None)),
                 ("--node-retries", getattr(args, "node_retries", None)))
    if args.executor == "ray":
        for flag, value in ray_flags:
            if value is not None and value < 0:
                raise HarnessError(f"{flag} {value}: expected a number >= 0",
                                   "--jobs-per-node 1 is the default (0 = as Ray's resources allow); "
                                   "--node-retries 1 is the default (0 = no retry)")
        from harness.execution.ray.connect import check_address, check_reachable, import_ray

        if args.address is not None:  # a malformed address or no head there: one clear error before the
            check_address(args.address)  # results folder is made (or an existing one is touched)
            check_reachable(args.address)
        import_ray(loopback=args.address is None)
        return
    given = [flag for flag, value in ray_flags if value is not None]
    if given:
        raise HarnessError(f"{' and '.join(given)} {'is a setting' if len(given) == 1 else 'are settings'} of the "
                           f"Ray executor, and this run uses --executor {args.executor}",
                           "add --executor ray, or drop " + " and ".join(given))
    placed = sorted({j.machine or ", ".join(j.resources) for j in jobs if j.machine or j.resources})
    if placed:
        raise HarnessError(f"the jobs name machines ({', '.join(placed)}), which only the Ray executor can place",
                           "add --executor ray (with --address for an existing cluster), or drop the machines axis")
    if getattr(args, "address", None) is not None:
        raise HarnessError("--address is the Ray cluster of --executor ray", "add --executor ray, or drop --address")


def _executor_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.executor != "ray":
        return {}
    return {"address": args.address,
            "jobs_per_node": 1 if args.jobs_per_node is None else args.jobs_per_node,
            "node_retries": 1 if args.node_retries is None else args.node_retries}


def _run_jobs(jobs: list[JobSpec], out: Path, writer: Any, args: argparse.Namespace, envs: Any = None) -> bool:
    """Plan, then run the jobs and save each as it finishes; True when Ctrl-C or SIGTERM stopped the run."""
    from harness.doctor.machine_record import environment_report
    from harness.execution.choose import make_executor

    plan = writer.plan(jobs, env_of=envs.identity if envs else None)
    for job_id, why in plan.reruns.items():
        print(f"{job_id}: {why}", file=sys.stderr)
    executor = make_executor(args.executor, log_dir=writer.layout.logs_dir,
                             resolver=envs.resolver if envs else None, **_executor_options(args))
    try:
        environments = envs.environments() if envs else None  # envs-b: each environment's packages
        writer.write_env({**environment_report(environments=environments), "executor": executor.describe()})
    except BaseException:
        executor.close()
        raise
    print(f"results: {out}  ({plan.summary()})", file=sys.stderr)

    previous = signal.getsignal(signal.SIGTERM)
    bars: dict[str, _Progress] = {}
    numbers = {job.job_id: i for i, job in enumerate(plan.run, 1)}
    started = time.perf_counter()
    finished: list[str] = []

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def progress_for(job: JobSpec) -> _Progress:
        bars[job.job_id] = _Progress(job, numbers.get(job.job_id, 0), len(plan.run), args.quiet)
        return bars[job.job_id]

    def on_result(result: JobResult) -> None:
        bar = bars.pop(result.spec.job_id, None)
        if bar is not None:
            bar.close()
        identity = envs.identity(result.spec) if envs else None
        if identity is not None:  # the content key of the build it ran in: resume reruns it if that changes
            result.summary["env_key"] = identity["key"]
            result.info["environment"] = identity
        writer.add(result)
        finished.append(result.spec.job_id)
        print(f"[{numbers.get(result.spec.job_id, len(finished))}/{len(plan.run)}] {_line(result)}", file=sys.stderr)
        print(_time_line(time.perf_counter() - started, len(finished), len(plan.run)), file=sys.stderr)

    signal.signal(signal.SIGTERM, on_term)
    try:
        executor.run_all(plan.run, on_result, progress_for)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished jobs are saved in {out}\n  resume with: harness run --resume {out}",
              file=sys.stderr)
        return True
    finally:
        for bar in bars.values():
            bar.close()
        signal.signal(signal.SIGTERM, previous)
        executor.close()
    return False


def _time_line(elapsed: float, done: int, count: int) -> str:
    """Elapsed time and, while jobs remain, an estimate from the mean time of the jobs finished so far."""
    left = count - done
    text = f"    elapsed {_clock(elapsed)}"
    if left and done:
        text += f", about {_clock(elapsed / done * left)} left for {left} job(s)"
    return text


def _ap_notes(result: Any) -> None:
    """Say why a job's AP is empty (no ground truth beside its source, a frame-size mismatch), once per reason,
    with the jobs it covers; an empty AP column with no word was a puzzle."""
    missing: dict[str, list[str]] = {}
    for job_id, note in (getattr(result, "notes", None) or {}).items():
        if job_id not in (getattr(result, "per_job", None) or {}) and "ground truth" in str(note):
            missing.setdefault(str(note), []).append(job_id)
    for note, jobs in missing.items():
        print(f"note: AP not computed for {len(jobs)} job(s) ({', '.join(jobs[:3])}"
              f"{', ...' if len(jobs) > 3 else ''}): {note}\n  fix: put MOT ground truth (gt/gt.txt, seqinfo.ini) "
              "beside the video, use an asset with ground truth, or score later with `harness eval DIR --gt FILE`",
              file=sys.stderr)


def _post_process(out: Path, writer: Any, args: argparse.Namespace) -> None:
    """Accuracy, agreement and the report: each optional, none able to lose what was measured."""
    steps = []
    try:
        from harness.measure.metrics.evaluate import evaluate_results

        floor = {} if getattr(args, "accuracy_floor", None) is None else {"accuracy_floor": args.accuracy_floor}
        steps.append(("accuracy/agreement", lambda: evaluate_results(out, writer=writer, **floor),
                      "scoring AP against ground truth and box agreement between jobs"))
    except ImportError:
        pass
    # scenarios: one row per sweep with its answer (scenarios.csv)
    from harness.measure.sweeps import write_sweeps

    steps.append(("scenario sweeps", lambda: write_sweeps(out, writer), ""))
    from harness.report.serving import write_serving

    steps.append(("served vs in-process", lambda: write_serving(out, writer), ""))
    if not args.no_report:
        try:
            from harness.report.build import build_report

            steps.append(("report", lambda: build_report(out, save_video=args.save_video),
                          "drawing plots and writing report.html" + (" and the annotated video" if args.save_video
                                                                     else "")))
        except ImportError:
            pass
    for name, step, doing in steps:
        t0 = time.perf_counter()
        if doing and not args.quiet:  # say what the seconds after the last job are spent on
            print(f"{doing} ...", end="", file=sys.stderr, flush=True)
        try:
            value = step()
            if doing and not args.quiet:
                print(f" {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            if name == "accuracy/agreement":
                _ap_notes(value)
        except HarnessError as exc:
            if doing and not args.quiet:
                print(file=sys.stderr)
            print(f"warning: {name} step failed: {exc.problem}" + (f"\n  fix: {exc.fix}" if exc.fix else ""),
                  file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - measured results are already on disk
            if doing and not args.quiet:
                print(file=sys.stderr)
            print(f"warning: {name} step failed: {type(exc).__name__}: {exc}", file=sys.stderr)
