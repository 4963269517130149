"""`python -m lightning_modules.commands ...`, the same as `crossdistill ...`."""

import sys

from lightning_modules.commands import main

sys.exit(main())
