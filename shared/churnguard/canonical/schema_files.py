"""The checked-in JSON Schemas (docs/schemas/<entity>.json): written from the models, and
compared with them by a test, so the documentation cannot drift from the code.

    .venv/bin/python -m churnguard.canonical.schema_files docs/schemas
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from churnguard.canonical.entities import ENTITIES, entity_schema


def rendered() -> dict[str, str]:
    """File name → the text the file must hold."""
    return {f"{name}.json": json.dumps(entity_schema(name), indent=2, sort_keys=True) + "\n" for name in ENTITIES}


def write(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in {path.name for path in directory.glob("*.json")} - set(rendered()):
        (directory / stale).unlink()
    for name, text in rendered().items():
        (directory / name).write_text(text)


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas"))
