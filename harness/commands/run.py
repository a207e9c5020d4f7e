"""``harness run``: run a comparison (flags, a suite file, or the default suite) into a results folder."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.jobs import JobResult, JobSpec
from harness.policy import PostprocessPolicy

EPILOG = """\
examples:
  harness run                                     default suite: reference SSD, every installed backend, PETS
  harness run --backend tf1 --video pets09-s2l1 --frames 200
  harness run --backend tf1 --model path/to/frozen_inference_graph.pb --video my.mp4 --out results/x
  harness run --backend torch --device gpu --strict-device     fail (don't fall back) if the GPU isn't used
  harness run --backend tf1 --backend opencv --preprocess shared   identical input pixels for both
  harness run suite.toml --list                   show the jobs a suite expands to, run nothing
  harness run --resume results/20261122-101500    finish an interrupted run

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
    p.add_argument("--backend", "-b", action="append", default=[], help="backend name (repeat for several): "
                   "tf1, tf2, opencv, torch, onnxruntime, tflite, or package.module:Class")
    p.add_argument("--model", "-m", help="model file/folder or asset name (default: each backend's reference SSD)")
    p.add_argument("--video", "--source", "-v", dest="source", default=None,
                   help="video file, image folder or asset name (default: pets09-s2l1)")
    p.add_argument("--device", "-d", action="append", default=[],
                   help="cpu (default), gpu, gpu:N, or a backend target such as cuda_fp16/opencl (repeatable)")
    p.add_argument("--frames", "-n", type=int, default=None, help="at most this many frames (default: all)")
    p.add_argument("--warmup", type=int, default=10, help="warm-up inferences on the first frame, not counted (10)")
    p.add_argument("--preprocess", choices=("native", "shared"), default=None,
                   help="native: each backend resizes as its users do; shared: the harness resizes once and every "
                   "backend gets identical pixels (default: native for --backend runs, shared for the default suite)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for the framework (default: its own)")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option, e.g. input=image_tensor:0, target=opencl, arch=ssd300_vgg16 (repeatable)")
    p.add_argument("--score-threshold", type=float, default=0.3,
                   help="comparison policy: score threshold for agreement/drawing (0.3); AP uses all saved boxes")
    p.add_argument("--record-threshold", type=float, default=0.01, help="lowest score saved in detections (0.01)")
    p.add_argument("--top-k", type=int, default=100, help="at most this many boxes per frame (100)")
    p.add_argument("--classes", default=None, help="comma-separated class ids to keep (default: all)")
    p.add_argument("--out", "-o", type=Path, default=None, help="results folder (default: results/<timestamp>)")
    p.add_argument("--resume", type=Path, default=None, metavar="DIR",
                   help="continue an interrupted run in DIR: finished jobs are kept, the rest rerun")
    p.add_argument("--strict-device", action="store_true",
                   help="a GPU request that ends on the CPU fails the job instead of being marked 'fallback'")
    p.add_argument("--timeout", type=float, default=None,
                   help="per-job timeout in seconds, process executor (default 3600; 0 = none): a job past it "
                   "is killed and recorded as 'timeout', and the suite goes on")
    p.add_argument("--executor", choices=("process", "inline"), default="process",
                   help="process: each job in a fresh process (default, survives crashes); inline: this process")
    p.add_argument("--list", action="store_true", help="print the jobs the run expands to, run nothing")
    p.add_argument("--no-report", action="store_true", help="skip plots and report.html")
    p.add_argument("--save-video", action="store_true", help="also write an annotated side-by-side video")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def expand_jobs(args: argparse.Namespace) -> list[JobSpec]:
    from harness import suite as suite_mod

    common = dict(
        frames=args.frames,
        warmup=args.warmup,
        threads=args.threads,
        options=suite_mod.parse_options(args.opt),
        policy=PostprocessPolicy(
            score_threshold=args.score_threshold, record_threshold=args.record_threshold, top_k=args.top_k,
            classes=tuple(int(c) for c in args.classes.split(",")) if args.classes else None,
        ),
        strict_device=args.strict_device,
        timeout_s=args.timeout,
    )
    if args.suite:
        load = getattr(suite_mod, "load_suite", None)
        if load is None:
            raise HarnessError("suite files are not supported in this build", "use --backend flags")
        return load(Path(args.suite), overrides=args)
    if args.backend:
        return suite_mod.jobs_from_flags(
            args.backend, args.device or ["cpu"], source=args.source or suite_mod.DEFAULT_SOURCE, model=args.model,
            preprocess=args.preprocess or "native", **common,
        )
    default = getattr(suite_mod, "default_suite", None)
    if default is not None:
        return default(args)
    backends = suite_mod.installed_backends()
    if not backends:
        raise HarnessError("no backend is installed", "pip install -e '.[all]'")
    return suite_mod.jobs_from_flags(
        backends, args.device or ["cpu"], source=args.source or suite_mod.DEFAULT_SOURCE, model=args.model,
        preprocess=args.preprocess or "shared", **common,
    )


def _print_jobs(jobs: list[JobSpec]) -> None:
    print(f"{len(jobs)} job(s):")
    for j in jobs:
        frames = "all" if j.frames is None else j.frames
        print(f"  {j.job_id:60s} backend={j.backend} model={j.model or 'reference'} source={j.source} "
              f"device={j.device} frames={frames} preprocess={j.preprocess}")


class _Progress:
    """A tqdm bar per job with the running FPS."""

    def __init__(self, job: JobSpec, quiet: bool) -> None:
        self.bar = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(desc=job.job_id[:48], unit="frame", dynamic_ncols=True, leave=False, file=sys.stderr)

    def __call__(self, done: int, total: int | None, fps: float) -> None:
        if self.bar is None:
            return
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.set_postfix_str(f"{fps:.1f} FPS", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _line(result: JobResult) -> str:
    s = result.summary
    if result.status in ("ok", "fallback"):
        text = (f"{result.spec.job_id}: {s['frames']} frames, p50 {s['p50_ms']:.1f} ms, p90 {s['p90_ms']:.1f} ms, "
                f"model {s['model_fps']:.1f} FPS, pipeline {s['pipeline_fps']:.1f} FPS, on {s['device_actual']}")
        if result.status == "fallback":
            text = "FALLBACK " + text + f"\n    !! {result.cause}"
        return text
    return f"{result.status.upper()} {result.spec.job_id}: {result.cause}"


def _planned_jobs(args: argparse.Namespace) -> tuple[list[JobSpec], Path]:
    """The jobs of this run and its folder: expanded from the flags/suite, or read back for ``--resume``."""
    if args.resume:
        from harness.results import load_run

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

    with ResultsWriter(out) as writer:  # holds the folder's lock until the report is written
        interrupted = _run_jobs(jobs, out, writer, args)
        _post_process(out, writer, args)
        rows = list(writer.rows.values())
    if interrupted:
        return 130
    fallbacks = [r for r in rows if r.get("status") == "fallback"]
    if fallbacks:
        print("\n!! FALLBACK: a GPU was requested but these jobs ran on the CPU:", file=sys.stderr)
        for r in fallbacks:
            print(f"!!   {r['job_id']}: {r.get('cause', '')}", file=sys.stderr)
    failed = [r for r in rows if r.get("status") not in ("ok", "fallback")]
    print(f"\nresults in {out}" + (f"  (report: {out / 'report.html'})" if (out / "report.html").exists() else ""))
    return 1 if failed else 0


def _run_jobs(jobs: list[JobSpec], out: Path, writer: Any, args: argparse.Namespace) -> bool:
    """Plan, then run and save each job in turn; True when Ctrl-C or SIGTERM stopped the run."""
    from harness.environment import environment_report
    from harness.executor import make_executor

    plan = writer.plan(jobs)
    for job_id, why in plan.reruns.items():
        print(f"{job_id}: {why}", file=sys.stderr)
    writer.write_env(environment_report())
    print(f"results: {out}  ({plan.summary()})", file=sys.stderr)

    executor = make_executor(args.executor, log_dir=writer.layout.logs_dir)
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        for job in plan.run:
            bar = _Progress(job, args.quiet)
            try:
                result = executor.run(job, bar)
            finally:
                bar.close()
            writer.add(result)
            print(_line(result), file=sys.stderr)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished jobs are saved in {out}\n  resume with: harness run --resume {out}",
              file=sys.stderr)
        return True
    finally:
        signal.signal(signal.SIGTERM, previous)
        executor.close()
    return False


def _post_process(out: Path, writer: Any, args: argparse.Namespace) -> None:
    """Accuracy, agreement and the report: each optional, none able to lose what was measured."""
    steps = []
    try:
        from harness.metrics.evaluate import evaluate_results

        steps.append(("accuracy/agreement", lambda: evaluate_results(out, writer=writer)))
    except ImportError:
        pass
    if not args.no_report:
        try:
            from harness.report.build import build_report

            steps.append(("report", lambda: build_report(out, save_video=args.save_video)))
        except ImportError:
            pass
    for name, step in steps:
        try:
            step()
        except HarnessError as exc:
            print(f"warning: {name} step failed: {exc.problem}" + (f"\n  fix: {exc.fix}" if exc.fix else ""),
                  file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - measured results are already on disk
            print(f"warning: {name} step failed: {type(exc).__name__}: {exc}", file=sys.stderr)
