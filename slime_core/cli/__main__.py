"""`python -m slime_core.cli ...`: the same as `slime ...`."""

import sys

from slime_core.cli.main import main

sys.exit(main())
