"""Loading ``module:attr`` targets named by an operator (the CLI's graphs, the service's
registry): one implementation, one set of error messages."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from flowstate.errors import TargetError

__all__ = ["load_target"]


def load_target(target: str) -> Any:
    """The object named by ``target``: ``package.module:attr`` (``attr`` may be dotted),
    or ``path/to/file.py:attr``. The current directory (or the file's directory) is put
    on ``sys.path`` first. Raises ``TargetError`` naming what could not be found."""
    if ":" not in target:
        raise TargetError(f"'{target}' is not module:attr; e.g. myapp.graphs:graph")
    mod_name, attr = target.split(":", 1)
    if mod_name.endswith(".py") or "/" in mod_name:
        path = Path(mod_name)
        sys.path.insert(0, str(path.parent.resolve()))
        mod_name = path.stem
    elif os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise TargetError(f"cannot import module '{mod_name}': {e}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise TargetError(f"module '{mod_name}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    return obj
