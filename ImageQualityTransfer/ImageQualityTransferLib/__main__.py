"""`python -m ImageQualityTransferLib ...` is the `iqt` command."""

import sys

from .apps.cli import main

sys.exit(main())
