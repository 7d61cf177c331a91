"""Convert the minimal Omniglot background sets into Meta-Dataset's record format.

Usage (from the repository root)::

    PYTHONPATH=src python scripts/omniglot_to_metadataset.py \
        ../shared/data/omniglot/images_background_small1.zip \
        ../shared/data/omniglot/images_background_small2.zip \
        --out runs/metadataset/records/omniglot

The same conversion as ``alfa data convert omniglot ZIP... --to DIR``
(:func:`alfa.data.metadataset_convert.convert_omniglot`): alphabets are the superclasses, the
6/2 alphabet split of ``configs/omniglot/splits``, one ``<class_id>.tfrecords`` per character,
each image RGB, inverted and JPEG-encoded as Meta-Dataset's converter writes it (``--keep-png``:
the zip's PNG bytes unchanged).
"""

from __future__ import annotations

import argparse
import sys

from alfa.data.metadataset_convert import convert_omniglot
from alfa.errors import AlfaError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zips", nargs="+", help="Omniglot zip files (images_background_*)")
    parser.add_argument("--out", required=True, help="output folder of the source")
    parser.add_argument(
        "--keep-png",
        action="store_true",
        help="store the zips' PNG bytes unchanged instead of Meta-Dataset's inverted RGB JPEG",
    )
    args = parser.parse_args(argv)
    try:
        summary = convert_omniglot(args.zips, args.out, keep_png=args.keep_png)
    except AlfaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(summary.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
