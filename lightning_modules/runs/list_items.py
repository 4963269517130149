"""`--a.b.N.c=value` flags: set a field of item N of a list in the config.

jsonargparse sets the fields of classes and dicts from flags, but not those of a list's items
(`model.init_args.objectives` is a list of subclasses), while W&B sweeps name every parameter by
a flat dotted path such as `model.init_args.objectives.0.init_args.weight`. So such flags are
taken out, the rest of the command is parsed once to get each list as the config files leave it,
and the flags are replaced by the whole list with the items changed, at the place of the first
one (so the order of `--config` files and flags keeps its meaning).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml
from jsonargparse import ArgumentParser, Namespace

_FLAG = re.compile(r"--((?:[A-Za-z_]\w*\.)+?)(\d+)\.([\w.]+)")
_NOT_PARSED_TWICE = ("--print_config", "-h", "--help")


@dataclass(frozen=True)
class _ItemFlag:
    words: tuple[int, ...]  # positions in the command
    prefix: str  # `model.init_args.objectives`
    index: int
    field: str  # `init_args.weight`
    value: str


def expand_list_items(parser: ArgumentParser, args: list[str]) -> list[str]:
    """`args` with list-item flags replaced by whole-list flags (unchanged when there are none)."""
    flags = _item_flags(args)
    if not flags or any(a.split("=")[0] in ("-h", "--help") for a in args):
        return args
    taken = {position for flag in flags for position in flag.words}
    rest = [
        word
        for position, word in enumerate(args)
        if position not in taken and word.split("=")[0] not in _NOT_PARSED_TWICE
    ]
    parsed = parser.parse_args(rest)
    subcommand = parsed.get("subcommand")
    lists: dict[str, list[Any]] = {}
    for flag in flags:
        key = f"{subcommand}.{flag.prefix}" if subcommand else flag.prefix
        if flag.prefix not in lists:
            current = parsed.get(key)
            if not isinstance(current, list):
                parser.error(f"--{flag.prefix}.{flag.index}.{flag.field}: {flag.prefix} is no list")
            lists[flag.prefix] = [_plain(item) for item in current]
        items = lists[flag.prefix]
        if flag.index >= len(items):
            parser.error(
                f"--{flag.prefix}.{flag.index}.{flag.field}: {flag.prefix} has {len(items)} items"
            )
        items[flag.index] = _set(items[flag.index], flag.field, yaml.safe_load(flag.value))
    first = {}
    for flag in flags:
        first.setdefault(flag.prefix, flag.words[0])
    expanded: list[str] = []
    for position, word in enumerate(args):
        for prefix, at in first.items():
            if at == position:
                expanded.append(f"--{prefix}={json.dumps(lists[prefix])}")
        if position not in taken:
            expanded.append(word)
    return expanded


def _item_flags(args: list[str]) -> list[_ItemFlag]:
    flags = []
    for position, word in enumerate(args):
        name, equals, value = word.partition("=")
        match = _FLAG.fullmatch(name)
        if not match:
            continue
        words = (position,)
        if not equals:  # `--key value`
            if position + 1 >= len(args):
                continue
            words, value = (position, position + 1), args[position + 1]
        prefix, index, field = match.groups()
        flags.append(_ItemFlag(words, prefix.rstrip("."), int(index), field, value))
    return flags


def _plain(value: Any) -> Any:
    return value.as_dict() if isinstance(value, Namespace) else value


def _set(item: Any, field: str, value: Any) -> Any:
    """`item` with `field` (dotted, digits index lists) set to `value`, intermediate dicts made."""
    head, _, rest = field.partition(".")
    if isinstance(item, list) and head.isdigit():
        item[int(head)] = _set(item[int(head)], rest, value) if rest else value
        return item
    item = dict(item) if isinstance(item, dict) else {}
    item[head] = _set(item.get(head), rest, value) if rest else value
    return item
