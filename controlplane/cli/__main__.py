"""`python -m controlplane.cli` (the Makefile's way to run it)."""

import sys

from controlplane.cli import main

sys.exit(main())
