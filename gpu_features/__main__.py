"""``python -m gpu_features``: the ``gpu-features`` command line, with no installed console script needed."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
