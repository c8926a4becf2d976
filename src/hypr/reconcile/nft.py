"""A typed model of the small part of nftables hypr uses, and the one place that turns it into script text.

Planners (see `firewall.py`) build `Table` values; `script()` serialises them. Keeping text generation here means
quoting and layout rules live in a single function each, and a golden file diff always reflects a change of intent,
not of formatting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Family = Literal["inet", "bridge"]

_FORBIDDEN_IN_STRING = ('"', "\\", "\n")


def quote(value: str) -> str:
    """An nft string literal. Interface names are the only strings we emit; the kernel allows `"` in them but nft
    has no escape for it, so such a name cannot be expressed and is refused instead of mis-rendered."""
    if not value or any(c in value for c in _FORBIDDEN_IN_STRING):
        raise ValueError(f"cannot express {value!r} as an nftables string")
    return f'"{value}"'


def anonymous_set(items: Iterable[str]) -> str:
    """`{ a, b }` for several items, the bare item for one (nft lists it that way too)."""
    values = list(items)
    if len(values) == 1:
        return values[0]
    return "{ " + ", ".join(values) + " }"


@dataclass(frozen=True)
class Hook:
    """What makes a chain a base chain."""

    type: Literal["filter", "nat"]
    hook: Literal["prerouting", "input", "forward", "output", "postrouting"]
    priority: str  # a keyword (`dstnat`, `filter`) or a number: nft 1.0.6 rejects `dstnat` on output
    policy: Literal["accept"] = "accept"  # hypr never drops traffic it does not own


@dataclass(frozen=True)
class Rule:
    """`match` statements in order, then one verdict or NAT statement."""

    match: tuple[str, ...]
    verdict: str
    comment: str = ""


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[Rule, ...]
    hook: Hook | None = None


@dataclass(frozen=True)
class NamedSet:
    """A named set (`data_type` empty) or map. Elements are already rendered (`tcp . 8080 : 192.0.2.2 . 80`)."""

    name: str
    key_type: str
    elements: tuple[str, ...]
    data_type: str = ""


@dataclass(frozen=True)
class Table:
    family: Family
    name: str
    sets: tuple[NamedSet, ...]
    chains: tuple[Chain, ...]


def script(tables: Iterable[Table]) -> str:
    """One nft script that replaces each table atomically: declare (so delete cannot fail), delete, define."""
    parts: list[str] = []
    for table in tables:
        ref = f"{table.family} {table.name}"
        parts.append(f"table {ref} {{}}\ndelete table {ref}\n")
        parts.append(_table(table))
    return "".join(parts)


def update(old: Iterable[Table], new: Iterable[Table]) -> str | None:
    """One nft script that turns tables `old` (as last applied) into `new` in place: set and map elements deleted
    and added, changed chains flushed and filled again; "" when nothing changed. None when the shape changed (a
    table, set or chain added or removed, a type or hook changed): replace the tables with `script()` then.

    Cost follows the change, not the tables: one published port is one element, not a re-load of every other.
    Element keys that are not there make nft refuse the whole transaction, so a kernel that drifted from `old`
    is noticed, never half-updated."""
    before = {(t.family, t.name): t for t in old}
    after = {(t.family, t.name): t for t in new}
    if before.keys() != after.keys() or any(_shape(before[k]) != _shape(after[k]) for k in after):
        return None
    parts: list[str] = []
    for key, table in after.items():
        ref = f"{table.family} {table.name}"
        for was, now in zip(before[key].sets, table.sets, strict=True):
            parts += _element_changes(ref, was, now)
        for was_chain, chain in zip(before[key].chains, table.chains, strict=True):
            if was_chain.rules != chain.rules:
                parts.append(f"flush chain {ref} {chain.name}\ntable {ref} {{\n{_chain(chain)}}}\n")
    return "".join(parts)


def _shape(table: Table) -> tuple[object, ...]:
    return (
        tuple((s.name, s.key_type, s.data_type) for s in table.sets),
        tuple((c.name, c.hook) for c in table.chains),
    )


def _element_changes(ref: str, was: NamedSet, now: NamedSet) -> list[str]:
    """A map element is deleted by its key; one whose value changed is deleted and added again."""
    old, new = set(was.elements), set(now.elements)
    gone = [e for e in was.elements if e not in new]
    added = [e for e in now.elements if e not in old]
    parts = []
    if gone:
        keys = [e.split(" : ")[0] if now.data_type else e for e in gone]
        parts.append(f"delete element {ref} {now.name} {{ {', '.join(keys)} }}\n")
    if added:
        parts.append(f"add element {ref} {now.name} {{ {', '.join(added)} }}\n")
    return parts


def _table(table: Table) -> str:
    blocks = [_set(s) for s in table.sets] + [_chain(c) for c in table.chains]
    return f"table {table.family} {table.name} {{\n" + "\n".join(blocks) + "}\n"


def _set(named: NamedSet) -> str:
    kind = "map" if named.data_type else "set"
    type_line = named.key_type + (f" : {named.data_type}" if named.data_type else "")
    # A key type that starts with `typeof ` declares the key by expression (for raw payload bits).
    keyword, type_line = (
        ("typeof", type_line.removeprefix("typeof ")) if type_line.startswith("typeof ") else ("type", type_line)
    )
    lines = [f"\t{kind} {named.name} {{", f"\t\t{keyword} {type_line}"]
    if named.elements:
        lines.append("\t\telements = {")
        lines.extend(f"\t\t\t{element}," for element in named.elements)
        lines.append("\t\t}")
    lines.append("\t}")
    return "\n".join(lines) + "\n"


def _chain(chain: Chain) -> str:
    lines = [f"\tchain {chain.name} {{"]
    if chain.hook is not None:
        h = chain.hook
        lines.append(f"\t\ttype {h.type} hook {h.hook} priority {h.priority}; policy {h.policy};")
    lines.extend(f"\t\t{_rule(rule)}" for rule in chain.rules)
    lines.append("\t}")
    return "\n".join(lines) + "\n"


def _rule(rule: Rule) -> str:
    words = [*rule.match, rule.verdict]
    if rule.comment:
        words.append(f"comment {quote(rule.comment)}")
    return " ".join(words)
