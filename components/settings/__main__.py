import sys

from components.settings.cli import main

sys.exit(main())
