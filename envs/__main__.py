import sys

from envs.cli import main

sys.exit(main())
