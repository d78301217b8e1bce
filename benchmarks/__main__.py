"""``python -m benchmarks``: run every case (or those chosen by ``--only`` / ``--skip``) and write the report."""

import sys

from benchmarks.harness import main

sys.exit(main())
