"""Every command's --help: each option says what it does and its default, and the epilog shows
examples."""

import copy
import re
import shlex

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


def example_invocations(name: str, epilog: str) -> list[list[str]]:
    """The argument lists of every `janus NAME ...` in the epilog's example lines (inside pipes,
    loops and torchrun lines; a trailing parenthesised remark is not part of the command)."""
    found = []
    for line in epilog.splitlines():
        for part in re.split(r"\s*(?:\||;|&&)\s*", line.strip()):
            part = re.sub(r"\s+\([^)]*\)\s*$", "", part)
            words = shlex.split(part)
            for start in range(len(words)):
                if words[start] in ("janus", "janus_cli") and words[start + 1:start + 1 + len(name.split())] == name.split():
                    found.append(words[start + 1 + len(name.split()):])
    return found


def parse_exit_code(name: str, args: list[str], capsys) -> tuple[int, str]:
    """Parse args with janus NAME's real parser and option types, running nothing: (exit code, stderr)."""
    command = copy.copy(COMMANDS[name])
    command.callback = lambda **options: None
    with pytest.raises(SystemExit) as exit_info:
        command.main(list(args), prog_name=f"janus {name}")
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_epilog_example_parses_with_the_real_parser(name, capsys):
    examples = example_invocations(name, COMMANDS[name].epilog)
    assert examples, f"janus {name}: no example found in the epilog"
    for args in examples:
        code, err = parse_exit_code(name, args, capsys)
        assert code == 0, f"janus {name} {shlex.join(args)}: {err}"


def test_the_example_check_catches_an_option_that_does_not_exist(capsys):
    code, err = parse_exit_code("pretrain", ["--fasta", "x.fa", "-o", "run/", "--val-regions", "20:1-2"], capsys)
    assert code == 2 and "--val-regions" in err
