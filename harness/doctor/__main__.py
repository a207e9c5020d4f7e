"""``python -m harness.doctor probe MODULE:FUNC | probes MODULE:FUNC... | libraries PATH...``: the doctor's subprocess side."""

import sys

from harness.doctor.worker import worker_main

sys.exit(worker_main(sys.argv[1:]))
