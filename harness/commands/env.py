"""``harness env``: named Python environments for jobs (built with uv, cached by content, reused).

A job runs in the environment it names, so frameworks whose CUDA libraries collide never share one, and one
backend can be compared across framework versions (OpenCV 4.14 against 5.0, TensorFlow 2.20 against 2.21).
Each environment holds the harness (without extras) plus the requirements given; it is built once, reused
while its requirements, its Python and the harness stay the same, and rebuilt when one of them changes or
the environment is damaged. HARNESS_OFFLINE=1 uses only environments that are already built.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from harness.core.errors import HarnessError

EPILOG = """\
Examples:
  harness env create ocv4 'opencv-python==4.14.*'        harness + OpenCV 4.14 (it still reads Caffe models)
  harness env create tf220 'tensorflow==2.20.*' --python 3.11
  harness env create --gpu                              the GPU layout: tf-gpu, torch-gpu, ort-gpu
  harness env create --gpu --resolve-only               check that it resolves, download nothing
  harness env list                                      name, Python, key packages, size, where, status
  harness env packages ocv4                             every package in it (what env.json records)
  harness env check /opt/venv/bin/python --install      make an existing interpreter usable for jobs
  harness env remove ocv4

Environments live under $HARNESS_CACHE/envs (default ~/.cache/detector-harness/envs). Details:
docs/environments.md.
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("env", help="named Python environments for jobs (create, list, remove)",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="env_command", metavar="ACTION")

    c = actions.add_parser("create", help="define and build an environment (or the GPU layout with --gpu)",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("name", nargs="?", help="its name (with --gpu: one of the layout's, default all three)")
    c.add_argument("requirements", nargs="*", metavar="REQUIREMENT",
                   help="pip requirements, e.g. 'opencv-python==4.14.*' (quote them for the shell)")
    c.add_argument("--python", default=None, metavar="X.Y", help="its Python version (default: this one's)")
    c.add_argument("--gpu", action="store_true",
                   help="the GPU layout: tf-gpu (tensorflow[and-cuda]), torch-gpu (CUDA 13 wheels), ort-gpu")
    c.add_argument("--force", action="store_true", help="rebuild even when a build for this spec exists")
    c.add_argument("--resolve-only", action="store_true",
                   help="resolve the requirements with the harness's own and print the versions; install nothing")
    c.set_defaults(func=run_create)

    ls = actions.add_parser("list", help="the environments: name, Python, key packages, size, where, status")
    ls.add_argument("--json", action="store_true", help="print them as JSON")
    ls.set_defaults(func=run_list)

    rm = actions.add_parser("remove", help="delete environments (a running job's environment is kept)")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.set_defaults(func=run_remove)

    pk = actions.add_parser("packages", help="every package installed in an environment, asked from inside it")
    pk.add_argument("name")
    pk.add_argument("--json", action="store_true")
    pk.set_defaults(func=run_packages)

    ck = actions.add_parser("check", help="can this interpreter run jobs (python = PATH in a suite)?")
    ck.add_argument("python", help="path of the interpreter, e.g. /opt/venv/bin/python")
    ck.add_argument("--install", action="store_true",
                    help="install the harness (no extras) into it first; changes that environment")
    ck.set_defaults(func=run_check)

    def no_action(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=no_action)


def _specs_to_create(args: argparse.Namespace) -> list:
    from harness.envs import EnvSpec, gpu_specs

    if args.gpu:
        layout = {s.name: s for s in gpu_specs(args.python)}
        if args.requirements:
            raise HarnessError("--gpu takes the layout's own requirements", "drop the requirements, or drop --gpu")
        if args.name is None:
            return list(layout.values())
        if args.name not in layout:
            raise HarnessError(f"{args.name!r} is not in the GPU layout", f"choose from: {', '.join(layout)}")
        return [layout[args.name]]
    if not args.name:
        raise HarnessError("harness env create needs a name and its requirements",
                           "e.g. harness env create ocv4 'opencv-python==4.14.*' (or --gpu for the GPU layout)")
    if not args.requirements:
        raise HarnessError(f"no requirements given for environment {args.name!r}",
                           f"e.g. harness env create {args.name} 'opencv-python==4.14.*'")
    return [EnvSpec.make(args.name, args.requirements, args.python)]


def run_create(args: argparse.Namespace) -> int:
    from harness.envs import EnvStore
    from harness.envs.builder import resolve_only
    from harness.envs.installers import find_installer
    from harness.envs.resolve import create
    from harness.envs.source import harness_source
    from harness.envs.spec import requirement_name

    store = EnvStore()
    specs = _specs_to_create(args)
    store.check_usable()
    for spec in specs:
        if args.resolve_only:
            pins = resolve_only(store, spec, harness_source(), find_installer())
            wanted = {requirement_name(r) for r in spec.install_requirements()}
            keys = [n for n in pins if requirement_name(n) in wanted]
            print(f"{spec.name}: resolves to {len(pins)} packages; "
                  + ", ".join(f"{n} {pins[n]}" for n in keys))
            continue
        done, previous = create(spec, store, force=args.force)
        if previous is not None and previous != spec:
            print(f"{spec.name}: redefined (was {' '.join(previous.requirements)}, Python {previous.python})")
        print(f"{spec.name}: {'built' if done.built else 'already built, reused'}; "
              f"Python {done.interpreter.python_version} at {done.interpreter.python}")
    return 0


def _key_packages(state: Any) -> str:
    if state.record is None:
        return ""
    from harness.envs.spec import requirement_name

    wanted = {requirement_name(r) for r in state.spec.requirements}
    named = {k.lower().replace("_", "-"): (k, v) for k, v in state.record.packages.items()}
    return ", ".join(f"{named[w][0]} {named[w][1]}" for w in sorted(wanted) if w in named)


def _rows() -> list[dict[str, Any]]:
    from harness.envs import EnvStore, current_key
    from harness.envs.store import folder_size

    store = EnvStore()
    rows = []
    for name in store.names():
        try:
            state = store.state(name, current_key(store.spec(name)))
        except HarnessError as exc:
            rows.append({"name": name, "status": f"error: {exc.problem}"})
            continue
        size = folder_size(state.folder) if state.folder is not None and state.folder.exists() else None
        rows.append({
            "name": name,
            "python": state.record.python_version if state.record else state.spec.python,
            "requirements": list(state.spec.requirements),
            "key_packages": _key_packages(state),
            "size_mb": round(size / 2**20) if size is not None else None,
            "where": str(state.folder) if state.folder else "",
            "status": state.state,
            "detail": state.detail,
        })
    return rows


def run_list(args: argparse.Namespace) -> int:
    rows = _rows()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not rows:
        print("no environments yet: harness env create NAME REQUIREMENT... (or --gpu)")
        return 0
    print(f"{'name':<14}{'python':<9}{'status':<11}{'size MB':>8}  key packages / where")
    for r in rows:
        size = "" if r.get("size_mb") is None else str(r["size_mb"])
        print(f"{r['name']:<14}{str(r.get('python', '')):<9}{r['status']:<11}{size:>8}  "
              f"{r.get('key_packages') or ' '.join(r.get('requirements', []))}")
        if r.get("where"):
            print(f"{'':<44}{r['where']}")
        if r.get("detail"):
            print(f"{'':<44}({r['detail']})")
    print("\nsize: bytes on disk in the folder; uv hardlinks files from its cache, so most are shared")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from harness.envs import EnvStore
    from harness.envs.locks import locked

    store = EnvStore()
    store.check_usable()
    for name in args.names:
        store.spec(name)  # an unknown name is an error with the known ones
        # under the name's lock: a create or rebuild of the same name finishes first (or starts after)
        with locked(store.name_lock(name), on_wait=lambda: print(
                f"waiting for another process creating or rebuilding environment {name!r} ...", file=sys.stderr)):
            kept = [f for f in store.folders_of(name) if not store.remove_folder(f, wait=False)]
            if kept:
                raise HarnessError(f"environment {name!r} is in use by a running harness ({kept[0]})",
                                   "wait for that run to end, then remove it again")
            store.undefine(name)
        print(f"removed {name}")
    return 0


def run_packages(args: argparse.Namespace) -> int:
    from harness.envs import ensure, list_packages

    done = ensure(args.name)
    packages = list_packages(done.interpreter.python)
    if args.json:
        json.dump(packages, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print("\n".join(f"{k}=={v}" for k, v in packages.items()))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from harness.envs import EnvStore, check_python

    if args.install:
        from harness.envs.builder import install_into
        from harness.envs.installers import find_installer
        from harness.envs.source import harness_source

        install_into(args.python, EnvStore(), harness_source(), find_installer())
    interp = check_python(args.python)
    print(f"{args.python}: Python {interp.python_version}, harness {interp.harness_version}, worker protocol "
          f"{interp.protocol}: it can run jobs (python = \"{args.python}\")")
    return 0
