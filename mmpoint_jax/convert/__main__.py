"""`python -m mmpoint_jax.convert IN.pth OUT_DIR --model dgcnn|resnet50_head [--k K]`.

--model dgcnn          CrossPoint DGCNN (inv_head; optional classifier) or MM-Point DGCNN
                       (inv_head + inv_head1, {'state_dict'} with 'module.' prefixes), point tower.
--model resnet50_head  CrossPoint image model (resnet.* + inv_head.*), image tower.
--k                    neighbours stored in the export's model config (the .pth does not know it;
                       CrossPoint pretrains with 20, MM-Point evaluates with 15).
--trust_pickle         allow full unpickling (runs code from the file; only for files you trust).
"""

from __future__ import annotations

import argparse
import sys

from mmpoint_jax.convert import CONVERTERS, ConversionError, convert_file
from mmpoint_jax.convert.pth import TRUST_FLAG, UnsafePickleError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mmpoint_jax.convert",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pth", help="PyTorch checkpoint (.pth)")
    parser.add_argument("out_dir", help="encoder export folder to write")
    parser.add_argument("--model", required=True, choices=sorted(CONVERTERS))
    parser.add_argument("--k", type=int, default=20, help="DGCNN neighbours recorded in the config")
    parser.add_argument(TRUST_FLAG, action="store_true", help="allow full unpickling (unsafe)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    args = parser.parse_args(argv)
    try:
        out = convert_file(
            args.pth,
            args.out_dir,
            args.model,
            k=args.k,
            trust_pickle=args.trust_pickle,
            overwrite=args.overwrite,
        )
    except (UnsafePickleError, ConversionError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
