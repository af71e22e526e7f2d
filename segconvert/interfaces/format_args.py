"""Format options anywhere on the command line: ``convert SRC --subset train OUT`` as well as
``convert SRC OUT --subset train``.

A format's own options (``--subset``, ``--masks-dir``, ...) are only known once ``--from``
and ``--to`` are, so ``convert`` and the inspection commands accept unknown options and parse
them in a second step. But Click's parser puts an unknown option among the positional
arguments: ``convert panoptic.json --masks-dir masks out`` made ``--masks-dir`` OUTPUT and
refused ``masks out`` as extra arguments, though every tool takes options anywhere.
:class:`FormatArgsCommand` therefore moves every option it does not know, with its value,
behind the command's own arguments before Click parses them, using the option tables of the
formats named by ``--from`` / ``--to`` (of every format when ``--from`` is auto) to know which
take a value. An option that takes a value in one format and is a flag in another counts as
taking a value: the worst case is then a clear "missing argument" error, never a shifted
OUTPUT.
"""

from __future__ import annotations

from collections.abc import Iterable

import click

from segconvert.interfaces import registry


def _option_arity(params: Iterable[click.Parameter]) -> dict[str, bool]:
    """Option string -> whether it takes a value."""
    table: dict[str, bool] = {}
    for p in params:
        if isinstance(p, click.Option):
            takes = not p.is_flag and not p.count
            for name in (*p.opts, *p.secondary_opts):
                table[name] = table.get(name, False) or takes
    return table


def _named_format(args: list[str], flag: str) -> str | None:
    """The value of ``--from`` / ``--to`` in ``args`` (last one wins, as in Click), or None."""
    value = None
    for i, a in enumerate(args):
        if a == "--":
            break
        if a == flag and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value


def format_option_arity(args: list[str]) -> dict[str, bool]:
    """Option string -> takes a value, over the reader options of ``--from`` (every reader for
    auto or an unknown name) and the writer options of ``--to`` (default nucleus)."""
    source = _named_format(args, "--from")
    target = _named_format(args, "--to") or "nucleus"
    readers = [source] if source not in (None, "auto") and registry.is_known(source) else registry.names()
    params: list[click.Parameter] = []
    for name in readers:
        try:
            fmt = registry.get(name)
        except Exception:  # noqa: BLE001 - a broken plugin is reported when it is used, not here
            continue
        if fmt.reader is not None:
            params.extend(fmt.reader.options)
    if registry.is_known(target):
        try:
            fmt = registry.get(target)
        except Exception:  # noqa: BLE001 - as above
            fmt = None
        if fmt is not None and fmt.writer is not None:
            params.extend(fmt.writer.options)
    return _option_arity(params)


def format_options_last(command: click.Command, args: list[str]) -> list[str]:
    """``args`` with every option that is not ``command``'s own (with its value, for a format
    option that takes one) moved after the rest, in order."""
    own = _option_arity(command.get_params(click.Context(command)))
    if not any(a.startswith("--") and a.split("=", 1)[0] not in own for a in args if a != "--"):
        return args  # nothing unknown: no format modules to import
    formats = format_option_arity(args)
    kept: list[str] = []
    moved: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            kept.extend(args[i:])
            break
        name, has_value = a.split("=", 1)[0], "=" in a
        if name in own:
            kept.append(a)
            if own[name] and not has_value and i + 1 < len(args):
                i += 1
                kept.append(args[i])
        elif a.startswith("-") and len(a) > 1:  # a format's option, or a mistyped one (reported later)
            moved.append(a)
            if formats.get(name) and not has_value and i + 1 < len(args):
                i += 1
                moved.append(args[i])
        else:
            kept.append(a)
        i += 1
    return kept + moved


class FormatArgsCommand(click.Command):
    """A command whose extra (format) options may come before its positional arguments."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, format_options_last(self, args))
