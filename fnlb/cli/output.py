"""What every `fnlb` tool prints: aligned tables with a header row, and the verbs' aliases.

Operators expect `ls` and `list`, `rm` and `remove` to mean the same everywhere, a header on
every table, and `--json` wherever state is printed; the tools share these helpers so they
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

ALIASES = {"list": "ls", "remove": "rm"}
"""Each alias -> the verb a tool's code uses (`fnlb keys` spells them the other way round)."""


def canonical(verb: str, names: Sequence[str]) -> str:
    """`verb` as the tool spells it: the one of `names` it is an alias of, or itself."""
    if verb in names:
        return verb
    for alias, short in ALIASES.items():
        if verb == alias and short in names:
            return short
        if verb == short and alias in names:
            return alias
    return verb


def verbs(names: Sequence[str]) -> tuple[str, ...]:
    """`names` and their aliases, for argparse's choices."""
    out = list(names)
    for alias, short in ALIASES.items():
        if short in names and alias not in out:
            out.append(alias)
        if alias in names and short not in out:
            out.append(short)
    return tuple(out)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart, the header first."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
