"""Shape-breaking edits of a JSON value, for mutants whose checksums are recomputed afterwards.

A checksum only says the bytes are the writer's; these edits model the writer (or an attacker)
producing well-framed content of the wrong shape: a value of the wrong type, a missing or extra
key, a number out of range, a negative length. ``edit`` changes one node, chosen at random or
among ``paths``, and says what it did.
"""

from __future__ import annotations

import copy
import random
from typing import Any, Iterator

Path = tuple  # keys (str) and list positions (int) from the root

#: every operation and whether its result is always outside the writer's shapes ("strict": the
#: reader must refuse it or read around it) or may be a legitimate value ("legit")
OPERATIONS = ("type", "delete", "extra", "huge", "negative", "null", "empty", "swap")

_WRONG_TYPES: tuple[Any, ...] = ("x", 7, -1.5, True, None, [], {}, [1, "a"], {"k": 1})
_HUGE = (2**64 + 7, -(2**63) - 1, 10**30, 2**63, 1e308, -1e308, 10**400)


def nodes(value: Any, path: Path = ()) -> Iterator[Path]:
    """Every node's path, the root included, depth first."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from nodes(child, path + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from nodes(child, path + (i,))


def get(value: Any, path: Path) -> Any:
    for key in path:
        value = value[key]
    return value


def _set(root: Any, path: Path, new: Any) -> Any:
    if not path:
        return new
    get(root, path[:-1])[path[-1]] = new
    return root


def edit(value: Any, rng: random.Random, *, paths: list[Path] | None = None,
         operations: tuple[str, ...] = OPERATIONS) -> tuple[Any, Path, str]:
    """A copy of ``value`` with one node changed, the node's path and a description such as
    ``rows[1]: type -> 'x'``."""
    root = copy.deepcopy(value)
    candidates = paths if paths else list(nodes(root))
    for _ in range(20):  # some operations do not apply to some nodes: draw again
        path = rng.choice(candidates)
        op = rng.choice(operations)
        done = _apply(root, path, op, rng)
        if done is not None:
            return done[0], path, done[1]
    path = rng.choice(candidates)
    return _set(root, path, "x"), path, f"{show(path)}: type -> 'x'"


def _apply(root: Any, path: Path, op: str, rng: random.Random) -> tuple[Any, str] | None:
    try:
        old = get(root, path)
    except (KeyError, IndexError, TypeError):
        return None
    where = show(path)
    if op == "type":
        choices = [v for v in _WRONG_TYPES if type(v) is not type(old)]
        new = copy.deepcopy(rng.choice(choices))
        return _set(root, path, new), f"{where}: type -> {new!r}"
    if op == "delete" and path:
        parent = get(root, path[:-1])
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
        return root, f"{where}: deleted"
    if op == "extra" and isinstance(old, (dict, list)):
        if isinstance(old, dict):
            old["zz_fuzz_extra"] = rng.choice([1, "x", None, [1, 2]])
            return root, f"{where}: extra key zz_fuzz_extra"
        old.append(rng.choice([0, "x", None, -1]))
        return root, f"{where}: extra element {old[-1]!r}"
    if op == "huge" and isinstance(old, (int, float)) and not isinstance(old, bool):
        new = rng.choice(_HUGE)
        return _set(root, path, new), f"{where}: {old!r} -> huge {_short(new)}"
    if op == "negative" and isinstance(old, int) and not isinstance(old, bool):
        new = -abs(old) - rng.choice([1, 2, 1000, 2**40])
        return _set(root, path, new), f"{where}: {old!r} -> negative {new}"
    if op == "null" and old is not None:
        return _set(root, path, None), f"{where}: -> null"
    if op == "empty" and isinstance(old, (dict, list, str)) and old:
        return _set(root, path, type(old)()), f"{where}: emptied"
    if op == "swap" and isinstance(old, list) and len(old) >= 2:
        i = rng.randrange(len(old) - 1)
        if old[i] == old[i + 1]:
            return None
        old[i], old[i + 1] = old[i + 1], old[i]
        return root, f"{where}: elements {i} and {i + 1} swapped"
    return None


def same_type_edit(old_root: Any, new_root: Any, path: Path) -> bool:
    """True when the edit put a string where a string was (a name changed, not a shape)."""
    try:
        return isinstance(get(old_root, path), str) and isinstance(get(new_root, path), str)
    except (KeyError, IndexError, TypeError):
        return False


def show(path: Path) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out or "(root)"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:10] + "..." + text[-6:]
