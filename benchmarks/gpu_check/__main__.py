"""python -m benchmarks.gpu_check: see benchmarks/gpu_check/__init__.py."""

import sys

from .cli import main

sys.exit(main())
