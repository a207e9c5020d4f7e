"""The doctor's subprocess side: ``python -m harness.doctor probe MODULE:FUNC | probes MODULE:FUNC... |
libraries PATH...``."""

import sys

from harness.doctor.worker import worker_main

sys.exit(worker_main(sys.argv[1:]))
