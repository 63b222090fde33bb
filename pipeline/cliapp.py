"""Typer app and command classes whose ``--help`` shows clean metavars.

Typer labels every option's value with its Python type (``--ignore-robots <bool>``,
``--proxy <str>``), flags and ``--help`` included. Here, once for every command and
group of the CLI: a flag shows no metavar at all; an option without its own ``metavar=``
shows one from its type (``N`` for an integer, ``NUMBER``, ``TEXT``, ``PATH``). Options
declared with ``metavar=`` (``SECONDS``, ``URL``, ``auto|cpu|cuda``) keep theirs; an
argument's row shows its name only.

    app = WebtextTyper(help=...)        # every @app.command() and add_typer group is tidied
"""

from __future__ import annotations

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

# a valued option's metavar by the type Typer shows (``<int>``, ``<list[path]>``, ``<float range>``),
# when the declaration names none
TYPE_METAVARS = {"int": "N", "float": "NUMBER", "str": "TEXT", "path": "PATH", "datetime": "DATE"}


def tidy_metavars(params: list, ctx) -> list:
    """Give each option a metavar fit for --help (in place; returns ``params``)."""
    for p in params:
        if isinstance(p, TyperArgument):     # its row already shows its metavar (OUT): no type beside it
            p.display_type_rich = _no_type
            continue
        if not isinstance(p, TyperOption) or p.metavar is not None:
            continue
        if p.is_flag or p.count:
            p.metavar = ""                  # a flag takes no value: show none
            continue
        shown = p.display_type(ctx).strip("<>")                         # "list[path]", "int range"
        bare = shown.removeprefix("list[").removesuffix("]").removesuffix(" range")
        p.metavar = TYPE_METAVARS.get(bare, bare.upper())
    return params


def _no_type(ctx=None) -> None:
    return None


class WebtextCommand(TyperCommand):
    def get_params(self, ctx) -> list:
        return tidy_metavars(super().get_params(ctx), ctx)


class WebtextGroup(TyperGroup):
    def get_params(self, ctx) -> list:
        return tidy_metavars(super().get_params(ctx), ctx)


class WebtextTyper(typer.Typer):
    """A Typer whose group and commands are the classes above, unless told otherwise."""

    def __init__(self, *args, cls=WebtextGroup, **kwargs):
        super().__init__(*args, cls=cls, **kwargs)

    def command(self, *args, cls=WebtextCommand, **kwargs):
        return super().command(*args, cls=cls, **kwargs)
