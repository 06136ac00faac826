"""`python -m bridge` is the same as the `sms-bridge` console script."""

import sys

from bridge.cli import main

sys.exit(main())
