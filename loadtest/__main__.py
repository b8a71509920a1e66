"""`python -m loadtest COMMAND ...`: a stack, or an experiment, by name (`python -m loadtest COMMAND --help`).

python -m loadtest stack up ...      # the local stack (loadtest/harness/)
python -m loadtest faults --quick    # an experiment (loadtest/experiments/)
"""

from __future__ import annotations

import runpy
import sys

COMMANDS = {
    "stack": "loadtest.harness.stack",
    "matrix": "loadtest.experiments.matrix",
    "bench": "loadtest.experiments.bench",
    "faults": "loadtest.experiments.faults",
    "hostile": "loadtest.experiments.hostile",
    "attacks": "loadtest.experiments.attacks",
    "scale": "loadtest.experiments.scale",
    "soak": "loadtest.experiments.soak",
    "durability": "loadtest.experiments.durability",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m loadtest {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    sys.argv = [f"python -m loadtest {argv[0]}", *argv[1:]]
    runpy.run_module(COMMANDS[argv[0]], run_name="__main__", alter_sys=True)  # the module exits with its status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
