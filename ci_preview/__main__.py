"""`python -m ci_preview`: what scripts/ci-preview runs (see ci_preview/__init__.py)."""
import sys

from ci_preview.cli import main

sys.exit(main())
