"""Write the settings table (from sandboxd/settings.py) into the document that shows it.

python scripts/settings_table.py           rewrite the table between its markers
python scripts/settings_table.py --check   exit 1 if the document's table differs (a test)
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "operations.md"
BEGIN = "<!-- settings:begin (generated from sandboxd/settings.py) -->\n"
END = "<!-- settings:end -->"


def with_table(text: str, table: str) -> str:
    start = text.index(BEGIN) + len(BEGIN)
    return text[:start] + table + text[text.index(END, start) :]


def main() -> int:
    from sandboxd.settings import markdown_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    text = DOCUMENT.read_text()
    wanted = with_table(text, markdown_table())
    if args.check:
        if wanted != text:
            name = DOCUMENT.relative_to(ROOT)
            print(f"{name}: stale settings table (run scripts/settings_table.py)", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
