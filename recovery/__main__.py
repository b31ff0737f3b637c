"""`python -m recovery`: scripts/recover-stack's command (recovery/cli.py)."""
import sys

from recovery.cli import main

sys.exit(main())
