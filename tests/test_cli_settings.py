"""The training commands' flags are generated from the config dataclasses: a flag per field,
with the field's type, choices, comment and preset values, declared nowhere else."""

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, fields, make_dataclass

import pytest

from ditto.agents.base import LatentConfig
from ditto.agents.registry import METHODS, Method, method_settings, register_method
from ditto.cli import build_parser, main
from ditto.config import WorldModelConfig, field_docs


def _command(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[name]


def _by_dest(command: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {action.dest: action for action in command._actions}


@pytest.mark.parametrize("name", ["train-world-model", "train"])
def test_every_config_field_is_a_flag_of_its_type_choices_and_comment(name):
    command = _command(build_parser(), name)
    actions = _by_dest(command)
    owners = (
        {f.name: WorldModelConfig for f in fields(WorldModelConfig)}
        if name == "train-world-model"
        else method_settings()
    )
    for field_name, config in owners.items():
        action = actions[field_name]  # its dest is the field's name
        assert action.default is None, field_name  # unset: the preset's value
        default = getattr(config(), field_name)
        if isinstance(default, bool):
            assert isinstance(action, argparse.BooleanOptionalAction), field_name
        elif field_name in config.choices():
            assert list(action.choices) == list(config.choices()[field_name]), field_name
        elif isinstance(default, tuple):
            assert action.nargs == "+" and action.type is float
        elif field_name != "algo":
            assert action.type is type(default), field_name
        if field_name != "algo":
            assert action.help.replace("%%", "%").startswith(field_docs(config)[field_name])
    help_text = command.format_help()
    assert (
        "--no-carry-state" in help_text if name == "train-world-model" else "--augment" in help_text
    )


def test_help_shows_each_presets_value_and_the_deferred_parser_the_same_help():
    train = " ".join(_command(build_parser(), "train").format_help().split())  # as one line
    assert "H: imagination steps from each expert start state" in train
    assert "(default: debug 4, small 15, paper 15)" in train
    assert "settings of ditto, dgail, lumos:" in train and "settings of bc:" in train
    assert "--reward {max_cosine,cosine,neg_l2}" in train
    deferred = build_parser(deferred=True)
    for name in ("train", "train-world-model"):
        assert (
            _command(deferred, name).format_help() == _command(build_parser(), name).format_help()
        )


def test_building_the_parser_and_top_level_help_import_no_torch():
    code = (
        "import sys\n"
        "from ditto.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['train-world-model', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--kl-scale FLOAT" in result.stdout


def test_flags_reach_the_config(tmp_path, capsys, make_dataset):
    data, _ = make_dataset()
    wm = tmp_path / "wm"
    argv = ["train-world-model", "--data", str(data), "--out", str(wm), "--preset", "debug"]
    argv += ["--steps", "2", "--kl-scale", "0.2", "--no-carry-state", "--stoch", "2"]
    assert main(argv) == 0
    saved = json.loads((wm / "config.json").read_text())["world_model"]
    assert (saved["kl_scale"], saved["carry_state"], saved["stoch"]) == (0.2, False, 2)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # argparse's own check of a flag's type
        main([*argv[:7], "--kl-scale", "lots"])
    assert exit_info.value.code == 2
    assert "argument --kl-scale: invalid float value: 'lots'" in capsys.readouterr().err


@dataclass(frozen=True)
class _PluginConfig(LatentConfig):
    algo: str = "plugin"
    weight: float = 1.0  # scales the plug-in's loss
    mode: str = "fast"  # how the plug-in runs

    CHOICES = {"mode": ("fast", "slow")}
    PRESETS = {"debug": {"weight": 0.5}}


def test_a_registered_methods_own_settings_are_flags(tmp_path):
    before = dict(METHODS)
    register_method(Method(_PluginConfig, object, label="Plug-in"))
    try:
        train = _command(build_parser(), "train")
        help_text = " ".join(train.format_help().split())  # as one line
        assert "settings of plugin:" in help_text
        assert "scales the plug-in's loss (default: debug 0.5, small 1.0, paper 1.0)" in help_text
        argv = ["--algo", "plugin", "--expert-data", "d", "--out", "o", "--expert-episodes", "2"]
        args = train.parse_args([*argv, "--weight", "2", "--mode", "slow"])
        assert (args.weight, args.mode) == (2.0, "slow")
        with pytest.raises(SystemExit):
            train.parse_args([*argv, "--mode", "medium"])
    finally:
        METHODS.clear()
        METHODS.update(before)


def test_a_config_whose_source_is_not_to_be_had_has_empty_docs():
    made = make_dataclass("Made", [("size", int, 3)], bases=(LatentConfig,), frozen=True)
    docs = field_docs(made)
    assert docs["size"] == "" and docs["horizon"] == field_docs(LatentConfig)["horizon"] != ""
