"""``python -m benchmarks.harness --offline --size-factor 0.1 --repeats 3 --out out/bench``."""

import sys

from benchmarks.harness.bench import main

sys.exit(main())
