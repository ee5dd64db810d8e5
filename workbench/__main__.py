"""`python -m workbench ...`: see workbench.cli."""

import sys

from .cli import main

sys.exit(main())
