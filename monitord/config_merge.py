"""Layering configuration data: the site file over the shipped defaults, and what it changed.

Tables merge key by key; the lists in ``KEYED_LISTS`` merge entry by entry on their key, so a
site that changes one ``[[vitals.limits]]`` entry keeps all the others; any other value (other
lists too) replaces. ``describe_changes`` lists what a site changed in the clinical sections,
shipped entries switched off (``enabled = false``) first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Lists of tables merged with the defaults entry by entry, on this key.
KEYED_LISTS: dict[tuple[str, ...], str] = {("vitals", "limits"): "id", ("checklist",): "id"}
# Sections whose changes from the shipped defaults ``describe_changes`` lists (what a reviewer approves).
CLINICAL_SECTIONS = ("patient_limits", "ketamine", "vitals", "sedation", "observations", "discharge", "course",
                     "alarms", "checklist", "pk")


class MergeError(ValueError):
    """A keyed list that cannot be merged; the message names the list and the entry."""


def merge(base: dict[str, Any], over: dict[str, Any], _path: tuple[str, ...] = ()) -> dict[str, Any]:
    """Deep-merge ``over`` onto ``base``. Tables merge key by key; the lists in ``KEYED_LISTS``
    merge entry by entry on their key; any other value (other lists too) replaces.
    Raises ``MergeError`` for a keyed list that cannot be merged."""
    out = dict(base)
    for key, value in over.items():
        here = (*_path, key)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, here)
        elif here in KEYED_LISTS and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_keyed(out[key], value, here, KEYED_LISTS[here])
        else:
            out[key] = value
    return out


def _merge_keyed(base: list[Any], over: list[Any], path: tuple[str, ...], key: str) -> list[Any]:
    name = ".".join(path)
    if not over:
        raise MergeError(
            f"{name} = []: entries merge with the shipped ones by {key}, so an empty list changes nothing; "
            f"to remove a shipped entry give it `{key} = \"...\"` and `enabled = false`"
        )
    out = [dict(e) if isinstance(e, dict) else e for e in base]
    index = {e.get(key): i for i, e in enumerate(out) if isinstance(e, dict)}
    seen: set[str] = set()
    for n, entry in enumerate(over, 1):
        if not isinstance(entry, dict):
            raise MergeError(f"{name}: entry {n} is {entry!r}, not a table ([[{name}]] with a {key})")
        ident = entry.get(key)
        if not isinstance(ident, str):
            raise MergeError(f"{name}: entry {n} has no {key}; entries merge with the shipped ones by {key}")
        if ident in seen:
            raise MergeError(f"{name}: {key} '{ident}' is given twice")
        seen.add(ident)
        if ident in index:
            out[index[ident]] = {**out[index[ident]], **entry}
        else:
            index[ident] = len(out)
            out.append(dict(entry))
    return out


# -- what a site changed ----------------------------------------------------------------------


def _changes(base: Any, new: Any, where: str) -> Iterator[str]:
    if isinstance(base, dict) and isinstance(new, dict):
        for key in new:
            if key == "enabled" and new[key] is True and key not in base:
                continue
            if key not in base:
                yield f"{where}.{key} = {new[key]!r} (not in the shipped defaults)"
            else:
                yield from _changes(base[key], new[key], f"{where}.{key}")
    elif base != new:
        yield f"{where} = {new!r} (shipped: {base!r})"


def describe_changes(defaults: dict[str, Any], merged: dict[str, Any]) -> list[str]:
    """One line per change ``merged`` makes to the clinical sections of ``defaults``; a shipped
    entry switched off comes first, marked DISABLED."""
    disabled: list[str] = []
    changed: list[str] = []
    for section in CLINICAL_SECTIONS:
        if section not in merged or section not in defaults:
            continue
        base, new = defaults[section], merged[section]
        for path, key in KEYED_LISTS.items():
            if path[0] != section:
                continue
            base_list, new_list = _get(defaults, path), _get(merged, path)
            if not isinstance(base_list, list) or not isinstance(new_list, list):
                continue
            shipped = {e.get(key): e for e in base_list if isinstance(e, dict)}
            name = ".".join(path)
            for entry in new_list:
                if not isinstance(entry, dict):
                    continue
                ident = entry.get(key)
                where = f"{name}[{ident}]"
                if entry.get("enabled") is False:
                    if ident in shipped:
                        disabled.append(f"DISABLED {where}: shipped entry switched off by enabled = false")
                    continue
                if ident not in shipped:
                    changed.append(f"{where} added")
                else:
                    changed.extend(_changes(shipped[ident], entry, where))
            # keep the generic walk away from the keyed list itself
            base = _without(base, path[1:])
            new = _without(new, path[1:])
        changed.extend(_changes(base, new, section))
    return disabled + changed


def _get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)  # type: ignore[assignment]
    return data


def _without(data: Any, path: tuple[str, ...]) -> Any:
    if not path:
        return None
    if not isinstance(data, dict):
        return data
    out = dict(data)
    if len(path) == 1:
        out.pop(path[0], None)
    elif path[0] in out:
        out[path[0]] = _without(out[path[0]], path[1:])
    return out
