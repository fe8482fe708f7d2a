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


M = TypeVar("M")

_plain_cache: dict[int, tuple[Any, Any]] = {}
_plain_types: dict[type, type] = {}


def plain(model: M) -> M:
    """A frozen pydantic model's fields as plain slot attributes, made once per model.

    Reading a field of a pydantic model goes through its ``__getattr__`` hook, about four
    times the cost of a slot; a cycle reads some fifty parameters. The copy is taken once
    and kept with the model (so the model's id stays unique); anything that is not a
    frozen model comes back as it is.
    """
    hit = _plain_cache.get(id(model))
    if hit is not None and hit[0] is model:
        return hit[1]  # type: ignore[no-any-return]
    cls = type(model)
    names = tuple(getattr(cls, "model_fields", ()))
    if not names or not getattr(model, "model_config", {}).get("frozen"):
        return model
    flat_cls = _plain_types.get(cls)
    if flat_cls is None:
        flat_cls = type(f"Plain{cls.__name__}", (), {"__slots__": names})
        _plain_types[cls] = flat_cls
    flat = flat_cls()
    for name in names:
        setattr(flat, name, getattr(model, name))
    if len(_plain_cache) >= 256:
        _plain_cache.clear()
    _plain_cache[id(model)] = (model, flat)
    return flat  # type: ignore[no-any-return]
