"""Build portbook's packaged registry database from an IANA registry file.

Usage (from the repository root)::

    python scripts/build_registry.py data/iana/service-names-port-numbers.xml

reads IANA's XML or CSV form of the Service Name and Transport Protocol Port
Number Registry (the format is detected from the content) and writes
``src/portbook/_book/data/registry.sqlite3``. Rebuild it this way whenever a newer
registry file is placed under ``data/iana/``.
"""

from __future__ import annotations

import argparse  # noqa: TID251 - a build script, not the library
import sys
from pathlib import Path

from portbook._book.build import MIN_RECORDS, build_registry_file
from portbook._exceptions import RegistryError

DEFAULT_DEST = (
    Path(__file__).resolve().parent.parent
    / "src"
    / "portbook"
    / "_book"
    / "data"
    / "registry.sqlite3"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="IANA service-names-port-numbers .xml or .csv")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_DEST, help="database to write")
    parser.add_argument(
        "--min-records",
        type=int,
        default=MIN_RECORDS,
        metavar="N",
        help=f"refuse a file with fewer records (default {MIN_RECORDS}; small test files need 1)",
    )
    args = parser.parse_args(argv)
    try:
        data = args.source.read_bytes()
        built = build_registry_file(
            data, args.source.name, args.output, min_records=args.min_records
        )
    except (OSError, RegistryError) as exc:
        print(f"build_registry: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{args.output}: {len(built.records)} records from {built.source_name} "
        f"({built.source_format}, updated {built.updated or 'unknown'}, "
        f"sha256 {built.source_sha256[:12]}...)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
