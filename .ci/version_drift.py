"""Print the installed distributions whose version differs from the pins in a constraints file.

Informational (exit 0): ``.ci/drift`` runs it after installing the newest releases, so that a smoke-test
failure that follows can be read against what changed.
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


def main(argv: list[str]) -> int:
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
