"""Regenerate every generated file and table of the repository from the code it documents, so the documentation
cannot drift from it:

- Pulumi.yaml's `config:` block and docs/settings.md's table of keys, from the settings model
  (components/settings/docs.py);
- docs/capacity-and-cost.md's capacity table, from the committed stack files read through the model;
- docs/metrics-and-alerts.md's alert table, from components/metrics_catalog.py.

A table sits between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in its page; the rest of the page is written by
hand. Only files whose text changes are written. With --check nothing is written: each stale file is named and the
exit status is 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as `python scripts/gen_docs.py`: the program's packages are at the root

from components import metrics_catalog  # noqa: E402
from components.settings import docs  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/gen-docs",
        description="Regenerate Pulumi.yaml's config declarations and the generated tables of docs/settings.md, "
        "docs/capacity-and-cost.md and docs/metrics-and-alerts.md from the code (writes the files that changed).",
    )
    parser.add_argument("--check", action="store_true",
                        help="write nothing; name each stale file and exit 1 if there is one")
    return parser


def with_table(text: str, name: str, table: str, page: str) -> str:
    """`text` with the block `name` holding `table`."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in text or end not in text:
        raise SystemExit(f"{page} has no {begin} ... {end} block")
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{table}\n{end}{rest.split(end, 1)[1]}"


def generated(root: Path) -> dict[str, str]:
    """Each generated file, relative to `root`, with the text it must have."""
    tables = {
        "docs/settings.md": ("config-reference", docs.config_reference_markdown()),
        "docs/capacity-and-cost.md": ("capacity", docs.stacks_capacity_markdown(root=root)),
        "docs/metrics-and-alerts.md": ("alerts", metrics_catalog.alerts_markdown()),
    }
    files = {"Pulumi.yaml": docs.pulumi_yaml((root / "Pulumi.yaml").read_text())}
    for page, (name, table) in tables.items():
        files[page] = with_table(text=(root / page).read_text(), name=name, table=table, page=page)
    return files


def stale(root: Path) -> list[str]:
    """The generated files under `root` whose text is not what the code generates."""
    return [path for path, text in generated(root).items() if (root / path).read_text() != text]


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    files = generated(ROOT)
    changed = [path for path, text in files.items() if (ROOT / path).read_text() != text]
    if arguments.check:
        for path in changed:
            print(f"{path} is stale: run scripts/gen-docs")
        return 1 if changed else 0
    for path in changed:
        (ROOT / path).write_text(files[path])
        print(f"{path} regenerated")
    if not changed:
        print(f"{', '.join(files)}: current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
