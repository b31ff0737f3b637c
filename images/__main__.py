"""`python -m images`: scripts/build-node-images without its warm-cache shortcut (see images/build.py)."""

import sys

from images.build import main

sys.exit(main())
