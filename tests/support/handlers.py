"""Loads function handlers by file path, the way Lambda does, for in-process tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def load_handler_module(function_dir: str) -> ModuleType:
    """Imports functions/<dir>/app.py fresh, so module-level setup reads the current env."""
    name = f"handler_{function_dir}"
    sys.modules.pop(name, None)
    spec = importlib.util.spec_from_file_location(name, REPO / "functions" / function_dir / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
