"""Print the installed distributions whose version differs from the pins in a constraints file, and the drift
check's verdict.

``version_drift.py constraints.txt``: informational (exit 0); ``.ci/drift`` runs it after installing the newest
releases, so that a smoke-test failure that follows can be read against what changed.

``version_drift.py --verdict RESULTS SUITE_RC TESTS_RC``: the one line a drift check ends with: passed, or
FAILED naming each job of the kept results folder that did not finish ok (and a failed test step), so that a
scheduled run's log says in its last line what a new release broke. Exit 0 when everything passed, else 1.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


def verdict(results: Path, suite_rc: int, tests_rc: int) -> tuple[str, int]:
    """The drift check's last line and exit status, from its results folder's runs.csv and the steps' codes."""
    import csv

    failed: list[str] = []
    runs = results / "runs.csv"
    if runs.is_file():
        with runs.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row.get("status") not in ("ok", "fallback"):
                    failed.append(f"{row.get('job_id')} ({row.get('status') or 'no status'})")
    problems = []
    if failed:
        problems.append(f"{len(failed)} job(s) of the default suite failed: {', '.join(failed)}")
    elif suite_rc != 0:
        problems.append(f"the default suite exited {suite_rc}" + ("" if runs.is_file() else " before writing runs.csv"))
    if tests_rc != 0:
        problems.append(f"the asset tests failed (pytest exit {tests_rc})")
    if not problems:
        return f"drift check passed: the newest releases run the default suite (results: {results})", 0
    return f"drift check FAILED: {'; '.join(problems)}; results kept in {results}", 1


def main(argv: list[str]) -> int:
    if argv[:1] == ["--verdict"]:
        line, code = verdict(Path(argv[1]), int(argv[2]), int(argv[3]))
        print(line)
        return code
    pinned = pins(Path(argv[0] if argv else "constraints.txt"))
    changed = []
    for dist in metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if name in pinned and dist.version.split("+")[0] != pinned[name]:
            changed.append(f"  {name}: {pinned[name]} -> {dist.version}")
    print(f"{len(changed)} distribution(s) differ from the measured versions" + (":" if changed else ""))
    print("\n".join(sorted(changed)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
