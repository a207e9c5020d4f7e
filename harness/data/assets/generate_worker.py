"""Child process that runs one asset generator (see :mod:`harness.data.assets.generated`).

``python -m harness.data.assets.generate_worker '{"generator": "mod:func", "inputs": {...}, "out": ..., "meta": {...}}'``
calls ``func(inputs, out, meta)``. A :class:`HarnessError` comes back to the parent as one marked JSON line on
stderr, so the parent can show the generator's own problem and fix instead of a traceback.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from harness.data.assets.generated import ERROR_MARK
from harness.core.errors import HarnessError


def main(argv: list[str]) -> int:
    request = json.loads(argv[0])
    module, _, name = request["generator"].partition(":")
    try:
        func = getattr(importlib.import_module(module), name)
        func({role: Path(p) for role, p in request["inputs"].items()}, Path(request["out"]), request["meta"])
    except HarnessError as exc:
        print(ERROR_MARK + json.dumps({"problem": exc.problem, "fix": exc.fix}), file=sys.stderr)
        return 2
    except (ImportError, AttributeError) as exc:
        print(ERROR_MARK + json.dumps({"problem": f"cannot load the generator {request['generator']}: {exc}",
                                       "fix": "install what it needs (pip install -e '.[all]'), or place the "
                                              "file under a folder named in HARNESS_ASSETS"}), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
