"""``python -m gpu_features.cli``: the same as ``gpu-features``."""
import sys

from . import main

sys.exit(main())
