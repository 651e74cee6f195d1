"""The registered model families, their named sizes and what their pretraining predicts.

    python -m audiossl.bin.models                      a table: family, targets, sizes
    python -m audiossl.bin.models --target-kind F      one word: kmeans (k-means labels from a
                                                       recipe stage), rvq (a residual-VQ teacher's
                                                       codes) or none (the model makes its own)
    python -m audiossl.bin.models --classes-field F    the config field holding F's label classes
"""
from __future__ import annotations

import argparse
import sys

from audiossl.errors import UserError, reports_user_errors
from audiossl.registry import FAMILIES, get_family, list_models


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-kind", metavar="FAMILY", help="print only the target kind of FAMILY")
    parser.add_argument("--classes-field", metavar="FAMILY", help="print only the config field of FAMILY's label classes")
    args = parser.parse_args(argv)
    for family, attribute, missing in ((args.classes_field, "classes", "reads no label files"),
                                       (args.target_kind, "targets", "is not a pretraining family")):
        if family:
            value = getattr(get_family(family), attribute)
            if value is None:
                raise UserError(f"{family} {missing}")
            print(value)
            return 0
    for name, sizes in list_models().items():
        targets = FAMILIES[name]["targets"] or "(downstream)"
        print(f"{name:16s} {targets:14s} {', '.join(sizes) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
