"""`python -m ImageQualityTransferLib ...` is the `iqt` command."""

import sys

from .apps.entry import main

sys.exit(main())
