"""`make demo`: the whole method end to end on the procedural shapes (being built; see issues)."""

import argparse
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo_out")
    parser.add_argument("--seeds", type=int, default=1)
    parser.parse_args()
    print(
        "demo: the end-to-end pipeline is not built yet (render stage, pretraining and evaluation "
        "are in progress); nothing to run.",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
