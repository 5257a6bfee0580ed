"""The top-level ``keras-arcface`` command: help, version, dispatch, errors."""

import subprocess
import sys

import pytest

from keras_arcface import cli
from keras_arcface.version import __version__


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "keras_arcface", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_command_without_importing_tensorflow():
    code = (
        "import sys\n"
        "from keras_arcface.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_ABSENT')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in cli.COMMANDS:
        assert name in result.stdout
    assert result.stdout.strip().endswith("TF_ABSENT")


def test_version_matches_the_package():
    result = _run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"keras-arcface {__version__}"


def test_no_arguments_prints_help_and_succeeds(capsys):
    assert cli.main([]) == 0
    assert "usage: keras-arcface" in capsys.readouterr().out


def test_unknown_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["no-such-command"])
    assert raised.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_registered_command_module_exists(name):
    module = cli._load(cli.COMMANDS[name][0])
    assert module is not None, f"{name}: module {cli.COMMANDS[name][0]} is missing"
    assert callable(module.add_arguments) and callable(module.main)
