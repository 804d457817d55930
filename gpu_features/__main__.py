"""``python -m gpu_features``: the same as ``gpu-features``."""
import sys

from .cli import main

sys.exit(main())
