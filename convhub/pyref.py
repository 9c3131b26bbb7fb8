"""Python references on the command line: `path/to/file.py:NAME` or `package.module:NAME`.

Importing a reference runs its code, exactly as `python file.py` would: only use trusted code.
NAME may be an object or a zero-argument function returning one.
"""

from __future__ import annotations

import importlib
import inspect
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from convhub.errors import InputError


def looks_like_reference(text: str) -> bool:
    module, sep, name = text.rpartition(":")
    # "C:\\model.keras" has a colon too; a reference names an identifier after it.
    return bool(sep and module and name.isidentifier() and not Path(text).exists())


def load(reference: str) -> Any:
    """The object a reference names, calling it first when it is a zero-argument function."""
    module_part, sep, name = reference.rpartition(":")
    if not sep or not module_part or not name.isidentifier():
        raise InputError(f"{reference!r} is not a Python reference (write file.py:NAME or package.module:NAME)")
    module = import_module(module_part)
    try:
        obj = getattr(module, name)
    except AttributeError:
        raise InputError(f"{module_part} has no attribute {name!r}") from None
    # Only plain functions are called: a model object is callable too, and must be returned as is.
    if (inspect.isfunction(obj) or inspect.ismethod(obj)) and _takes_no_arguments(obj):
        try:
            obj = obj()
        except Exception as exc:  # noqa: BLE001 - the user's code failed
            raise InputError(f"{reference} raised {type(exc).__name__}: {exc}") from exc
    return obj


def _takes_no_arguments(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def import_module(module_part: str) -> ModuleType:
    """Import `path/to/file.py` or `package.module`, turning failures into one-line InputErrors."""
    if module_part.endswith(".py") or "/" in module_part or "\\" in module_part:
        path = Path(module_part)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        name = f"convhub_ref_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise InputError(f"{path} cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look modules up by name
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001
            del sys.modules[name]
            raise InputError(f"importing {path} raised {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(module_part)
    except ModuleNotFoundError as exc:
        raise InputError(f"no module named {exc.name!r} (from {module_part!r})") from None
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"importing {module_part} raised {type(exc).__name__}: {exc}") from exc
