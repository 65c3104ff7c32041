"""`python -m sandbox FILE [--json]`: the same as `python -m sandbox.validate`."""

import sys

from sandbox.validate import main

sys.exit(main())
