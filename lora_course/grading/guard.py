"""Inside the grading kernel: undo monkeypatching of what the tests compare with, and report it.

A student's cell can rebind ``torch.allclose``, patch ``torch.Tensor.__eq__``, swap a reference class's method,
install an IPython input transformer that wraps every cell in ``try/except``, replace ``__builtins__``, or redefine a
helper that a locked cell defined. ``install()`` (called by the sandbox kernel before any cell runs) snapshots the
modules and classes the tests use. Before every trusted cell (setup, locked code, tests) the grader runs
``begin_trusted()``: it restores the snapshot and the names trusted cells defined, and reports what it undid.
After a test, ``after_test()`` reports anything changed *during* the test, i.e. by student code the test called
(the grader then fails that test). ``end_trusted()`` adopts what a trusted cell itself changed (importing
transformers makes torch._dynamo wrap torch.manual_seed, say) and the names it defined.

This raises the bar, it is not a proof: code running in the same process can in principle find and defeat the
guard. The process boundary (sandbox_kernel) is what protects the hidden tests on disk, other students and the
network; the guard only decides whether a test's verdict can be trusted.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading

MODULES = [
    "builtins", "math", "operator", "functools", "collections", "re", "string", "random",
    "torch", "torch.testing", "torch.nn", "torch.nn.functional", "torch.autograd", "torch.utils.checkpoint",
    "numpy", "numpy.testing", "lora_course.lora", "lora_course.lora.layer", "lora_course.lora.inject",
    "lora_course.models", "lora_course.models.loading", "lora_course.models.tiny",
    "sklearn.metrics", "bitsandbytes.functional",
]
CLASS_PATHS = [
    ("torch", "Tensor"), ("torch.nn", "Module"), ("torch.nn", "Linear"), ("torch.nn", "Parameter"),
    ("lora_course.lora.layer", "LoRALinear"), ("numpy", "ndarray"),
]
# names IPython itself puts into builtins around every cell
IPYTHON_BUILTINS = {"input", "raw_input", "exit", "quit", "help", "copyright", "credits", "license", "_", "__", "___", "display",
                    "get_ipython", "__IPYTHON__", "__builtins__"}
SHELL_LISTS = ["input_transformers_cleanup", "input_transformers_post", "ast_transformers"]

# functions libraries legitimately wrap on import (functools.wraps): accepted, they decide no test's verdict
WRAPPED_BY_LIBRARIES = {"manual_seed", "seed", "initial_seed", "get_rng_state", "set_rng_state"}

_modules: dict[str, tuple[object, dict]] = {}
_classes: dict[str, tuple[type, dict]] = {}
_shell: dict = {}
_trusted: dict[str, object] = {}
_wanted: set[str] = set()
_before_trusted: dict[str, object] = {}
_wanted: set[str] = set()


def install() -> None:
    import os

    wanted = os.environ.get("LORA_COURSE_GUARD_MODULES")
    # libraries the exercise never imports need no snapshot (importing them costs seconds per submission)
    _wanted.update(m.split(".")[0] for m in MODULES) if wanted is None else _wanted.update(wanted.split(","))
    modules = [m for m in MODULES if m.split(".")[0] in _wanted]
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a library this exercise does not use
            continue
        _modules[name] = (mod, dict(vars(mod)))
    for modname, attr in CLASS_PATHS:
        mod = _modules.get(modname, (None,))[0]
        cls = getattr(mod, attr, None) if mod is not None else None
        if isinstance(cls, type):
            _classes[f"{modname}.{attr}"] = (cls, dict(vars(cls)))


def _ip():
    try:
        from IPython import get_ipython

        return get_ipython()
    except Exception:  # noqa: BLE001
        return None


def snapshot_shell() -> None:
    """Called once from the kernel's startup lines, before any cell."""
    ip = _ip()
    if ip is None:
        return
    for key in SHELL_LISTS:
        _shell[key] = list(getattr(ip, key))
    _shell["custom_exceptions"] = ip.custom_exceptions
    _shell["events"] = {k: list(v) for k, v in ip.events.callbacks.items()}
    _shell["instance_keys"] = set(vars(ip))
    _shell["builtins"] = ip.user_ns.get("__builtins__")


def _restore(names: bool = True) -> list[str]:
    changed = []
    for name, (mod, snap) in _modules.items():
        if sys.modules.get(name) is not mod:
            sys.modules[name] = mod
            changed.append(f"sys.modules[{name!r}]")
        current = vars(mod)
        for key, value in snap.items():
            if name == "builtins" and key in IPYTHON_BUILTINS:
                continue
            now = current.get(key, _MISSING)
            if now is not value:
                if key in WRAPPED_BY_LIBRARIES and getattr(now, "__wrapped__", None) is value:
                    snap[key] = now  # torch._dynamo, imported by transformers, wraps these; not a comparison
                    continue
                current[key] = value
                changed.append(f"{name}.{key}")
    for name, (cls, snap) in _classes.items():
        current = dict(vars(cls))
        for key, value in snap.items():
            if current.get(key, _MISSING) is not value:
                try:
                    type.__setattr__(cls, key, value)
                except (TypeError, AttributeError):
                    pass
                changed.append(f"{name}.{key}")
        for key in set(current) - set(snap):
            # libraries add new methods to classes (transformers adds nn.Module.smart_apply); what matters is a
            # new attribute that hides one the class inherits (a patched Tensor.__eq__, say)
            if not any(key in vars(base) for base in cls.__mro__[1:]):
                continue
            try:
                type.__delattr__(cls, key)
            except (TypeError, AttributeError):
                pass
            changed.append(f"{name}.{key}")
    if sys.gettrace() is not None or sys.getprofile() is not None:
        sys.settrace(None)
        sys.setprofile(None)
        changed.append("sys.settrace/setprofile")
    threading.settrace(None)
    ip = _ip()
    if ip is not None and "instance_keys" in _shell:
        for key in SHELL_LISTS:
            lst = getattr(ip, key)
            if lst != _shell[key]:
                lst[:] = _shell[key]
                changed.append(f"IPython {key}")
        if ip.custom_exceptions != _shell["custom_exceptions"]:
            ip.set_custom_exc((), None)
            changed.append("IPython custom exception handler")
        for k, v in _shell["events"].items():
            if ip.events.callbacks.get(k) != v:
                ip.events.callbacks[k] = list(v)
                changed.append(f"IPython event {k}")
        for key in set(vars(ip)) - _shell["instance_keys"]:
            if callable(getattr(type(ip), key, None)):
                delattr(ip, key)
                changed.append(f"IPython shell.{key}")
        if ip.user_ns.get("__builtins__") is not _shell["builtins"]:
            ip.user_ns["__builtins__"] = _shell["builtins"]
            changed.append("__builtins__")
        for key, value in (_trusted.items() if names else ()):
            if ip.user_ns.get(key, _MISSING) is not value:
                ip.user_ns[key] = value
                changed.append(f"name {key!r} defined by a locked cell")
    return changed


_MISSING = object()


def _adopt() -> None:
    """What a trusted cell changed in the watched modules (importing transformers makes dynamo wrap
    torch.manual_seed, say) becomes the new reference; watched modules it imported are snapshotted."""
    for name in MODULES:
        mod = sys.modules.get(name)
        if mod is not None and (name in _modules or name.split(".")[0] in _wanted):
            _modules[name] = (mod, dict(vars(mod)))
    for name, (cls, _) in list(_classes.items()):
        _classes[name] = (cls, dict(vars(cls)))


def begin_trusted() -> None:
    """Before a locked cell or a test: undo what student code changed, then remember the user namespace."""
    changed = _restore()
    print(json.dumps({"restored": changed}))
    ip = _ip()
    if ip is not None:
        _before_trusted.clear()
        _before_trusted.update({k: v for k, v in ip.user_ns.items() if not k.startswith("_")})


def end_trusted() -> None:
    _adopt()
    ip = _ip()
    if ip is None:
        return
    for k, v in ip.user_ns.items():
        if not k.startswith("_") and _before_trusted.get(k, _MISSING) is not v and k not in ("In", "Out", "exit", "quit"):
            _trusted[k] = v


def after_test() -> None:
    """Whatever changed while the test ran was changed by code the test called: that test's verdict is void."""
    changed = _restore(names=False)  # the test itself rebinds names; only the libraries and the shell count here
    print(json.dumps({"during_test": changed}))
