"""Every command's --help: each option says what it does and its default, and the epilog shows
examples."""

import pytest
import typer.core
import typer.main

from janus_cli.main import app


def all_commands(group, prefix=()):
    for name, command in group.commands.items():
        if isinstance(command, typer.core.TyperGroup):
            yield from all_commands(command, prefix + (name,))
        else:
            yield " ".join(prefix + (name,)), command


COMMANDS = dict(all_commands(typer.main.get_command(app)))


def test_every_command_is_covered():
    assert {"embed", "likelihood", "score-variants", "predict", "merge", "plot mutagenesis"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_options_have_help_with_a_default_and_the_epilog_has_examples(name):
    command = COMMANDS[name]
    assert command.epilog and f"janus {name}" in command.epilog, f"{name}: no example in the epilog"
    for param in command.params:
        if not isinstance(param, typer.core.TyperOption) or param.name == "help":
            continue
        assert param.help, f"janus {name} {param.opts[0]}: no help text"
        if param.required:
            continue
        shown = param.show_default and param.default not in (None, [], ())
        assert shown or "(default:" in param.help, f"janus {name} {param.opts[0]}: help does not give the default"
