"""`python -m loadtest.matrix`: run the matrix (see loadtest/matrix/run.py)."""

import sys

from loadtest.matrix.run import main

if __name__ == "__main__":
    sys.exit(main())
