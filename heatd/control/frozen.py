"""Fast construction of the frozen, slotted dataclasses a control cycle builds.

A frozen dataclass's generated ``__init__`` stores every field through
``object.__setattr__``, about 0.1 us a field. A cycle builds a dozen such objects (state,
decision, loop memories), and a co-simulated year runs three million cycles, so that alone
would be a sizeable share of the step. :func:`maker` returns a constructor that writes the
slots directly: the same class, the same fields in the same order, the object exactly as
``cls(*args)`` would build it and just as read-only afterwards, in half the time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, is_dataclass
from types import MemberDescriptorType
from typing import Any, TypeVar

T = TypeVar("T")


def maker(cls: type[T]) -> Callable[..., T]:
    """``make(*values)`` == ``cls(*values)`` with every field given positionally.

    Falls back to ``cls`` itself for a class the shortcut would not build faithfully: not a
    dataclass, not slotted, or with ``__post_init__`` or fields outside ``__init__``.
    """
    if not is_dataclass(cls) or hasattr(cls, "__post_init__"):
        return cls
    names = [f.name for f in fields(cls)]
    slots = [cls.__dict__.get(n) for n in names]
    if not all(f.init for f in fields(cls)) or not all(
        isinstance(s, MemberDescriptorType) for s in slots
    ):
        return cls
    args = ", ".join(names)
    body = "".join(f"    _set_{n}(obj, {n})\n" for n in names)
    src = f"def make({args}):\n    obj = _new(_cls)\n{body}    return obj\n"
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    scope.update({f"_set_{n}": s.__set__ for n, s in zip(names, slots, strict=True)})
    exec(src, scope)  # the source names only the class's own fields
    make: Callable[..., T] = scope["make"]
    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
    make.__doc__ = f"{cls.__name__}(*fields) without the per-field object.__setattr__."
    return make
