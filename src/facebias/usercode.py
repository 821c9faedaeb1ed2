"""The one loader for code the user brings: import a Python file, take a class from it, build it, load its weights.

SECURITY: importing the user's file is the only outside code facebias executes. A user generator
(``facebias.generators.user``) and a user model for dissect.py's analyses (``facebias.models.user``) both come
through here. The file is imported with importlib exactly as given (its top-level code runs), so pass only
files you trust. The weights are read with ``torch.load(..., weights_only=True)``, which unpickles tensors and
plain containers only, never code.

Every function raises the caller's ``error`` (a subclass of ``UserCodeError``) with a message that names the
file, the option at fault and the fix; ``label`` says how the message names the thing ("generator file x.py",
"model.file=x.py").
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAX_LISTED = 20  # keys listed in a message before "... and N more"


class UserCodeError(ValueError):
    """A user's file, class, constructor arguments or weights are unusable; the message says why and what to do."""


def import_user_class(file: str | Path, class_name: str, *, label: str | None = None, class_option: str | None = None,
                      error: type[UserCodeError] = UserCodeError) -> type:
    """Import ``file`` as a fresh module and return its attribute ``class_name`` (which must be a class).

    A syntax error shows the line; a missing class lists the classes the file defines (``class_option``, when
    given, is the option to set to one of them).
    """
    path = Path(file).expanduser()
    label = label or f"file {path}"
    if not path.is_file():
        raise FileNotFoundError(f"{label} not found (give the path of a .py file defining {class_name})")
    module_name = f"facebias_usercode_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise error(f"{label}: cannot import it as a Python module (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here while it runs
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        sys.modules.pop(module_name, None)
        raise error(f"{label} has a syntax error at line {err.lineno}: {err.msg}{_source_line(err)}") from None
    except Exception as err:
        sys.modules.pop(module_name, None)
        raise error(f"importing {label} failed: {type(err).__name__}: {err}") from err
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        defined = sorted(name for name, obj in vars(module).items()
                         if inspect.isclass(obj) and obj.__module__ == module_name)
        fix = f"; set {class_option} to one of them" if class_option and defined else ""
        raise error(f"{label} defines no class {class_name!r}; classes it defines: {defined or 'none'}{fix}")
    return cls


def _source_line(err: SyntaxError) -> str:
    """The offending line and a caret under the column, indented, as Python shows them (empty when unknown)."""
    if not err.text:
        return ""
    text = err.text.rstrip("\n")
    stripped = text.lstrip()
    caret = ""
    if err.offset:
        column = max(0, err.offset - 1 - (len(text) - len(stripped)))
        caret = "\n    " + " " * column + "^"
    return f"\n    {stripped}{caret}"


def build_module(cls: type, kwargs: Mapping[str, Any] | None, *, class_name: str, file: str | Path,
                 kwargs_option: str, error: type[UserCodeError] = UserCodeError):
    """``cls(**kwargs)``, checked to be a ``torch.nn.Module``."""
    import torch

    kwargs = dict(kwargs or {})
    try:
        module = cls(**kwargs)
    except Exception as err:
        raise error(f"{class_name}(**{kwargs}) from {file} failed: {type(err).__name__}: {err}; pass the "
                    f"constructor's arguments as {kwargs_option}") from err
    if not isinstance(module, torch.nn.Module):
        raise error(f"{class_name} from {file} is a {type(module).__name__}, not a torch.nn.Module")
    return module


def read_state_dict(state_dict: str | Path | Mapping, *, label: str | None = None,
                    error: type[UserCodeError] = UserCodeError) -> Mapping:
    """A mapping of tensors: given as one, or read from a file with ``torch.load(weights_only=True)``.

    A checkpoint whose top level holds a "state_dict" mapping (as Lightning writes) yields that mapping.
    """
    if isinstance(state_dict, Mapping):
        return state_dict
    import torch

    path = Path(state_dict).expanduser()
    label = label or f"state_dict file {path}"
    if not path.is_file():
        raise FileNotFoundError(f"{label} not found")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise error(f"{label}: cannot read it with torch.load(weights_only=True): {err}; save the weights with "
                    "torch.save(model.state_dict(), path) (tensors only, no pickled objects)") from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise error(f"{label} holds a {type(loaded).__name__}, not a state_dict (a mapping of tensors)")
    return loaded


def _listed(keys: list[str]) -> str:
    if not keys:
        return "none"
    shown = keys[:MAX_LISTED]
    more = f" ... and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else ""
    return f"{shown}{more}"


def load_weights(module, weights: Mapping, *, label: str, owner: str, fix: str = "",
                 error: type[UserCodeError] = UserCodeError) -> None:
    """Load ``weights`` into ``module`` strictly; missing and unexpected keys are listed, shapes checked."""
    expected, given = set(module.state_dict()), set(weights)
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        raise error(f"{label} does not fit {owner}: missing keys {_listed(missing)}; unexpected keys "
                    f"{_listed(unexpected)}{fix}")
    own = module.state_dict()
    mismatched = [f"size mismatch for {key}: {tuple(weights[key].shape)} in the state_dict, {tuple(own[key].shape)} "
                  "in the model" for key in sorted(expected)
                  if hasattr(weights[key], "shape") and tuple(weights[key].shape) != tuple(own[key].shape)]
    if mismatched:
        more = f"; ... and {len(mismatched) - MAX_LISTED} more" if len(mismatched) > MAX_LISTED else ""
        raise error(f"{label} does not fit {owner}: {'; '.join(mismatched[:MAX_LISTED])}{more}{fix}")
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as err:  # anything else torch refuses
        raise error(f"{label} does not fit {owner}: {err}{fix}") from None
