"""`python -m nscl run | sweep | report` (see nscl.cli)."""

import sys

from nscl.cli import main

if __name__ == "__main__":
    sys.exit(main())
