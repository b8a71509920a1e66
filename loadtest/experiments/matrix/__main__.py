"""`python -m loadtest matrix`: run the matrix (see loadtest/experiments/matrix/run.py)."""

import sys

from loadtest.experiments.matrix.run import main

if __name__ == "__main__":
    sys.exit(main())
