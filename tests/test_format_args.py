"""Format options before the positional arguments: ``convert SRC --masks-dir M OUT``.

Click took such an option (unknown to it, flag or not) for a positional argument, so the
command refused it ("unexpected extra arguments") -- or, had SOURCE and OUTPUT lined up
differently, would have shifted them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from segconvert.interfaces.cli import convert, main
from segconvert.interfaces.format_args import format_options_last

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


SRC = str(FIXTURES / "coco-panoptic" / "panoptic.json")


def _parsed(args: list[str]) -> tuple[dict, list[str]]:
    ctx = convert.make_context("convert", [SRC if a == "SRC" else a for a in args])
    params = dict(ctx.params)
    params["source"] = "SRC" if params["source"] == SRC else params["source"]
    return params, ctx.args


def test_value_option_before_output_keeps_output(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(FIXTURES / "coco-panoptic", src)
    (src / "panoptic").rename(src / "pngs")
    before, after = tmp_path / "before", tmp_path / "after"
    runner = CliRunner()
    r1 = runner.invoke(main, ["convert", str(src / "panoptic.json"), "--masks-dir", str(src / "pngs"), str(before),
                              "--jobs", "1"])
    r2 = runner.invoke(main, ["convert", str(src / "panoptic.json"), str(after), "--masks-dir", str(src / "pngs"),
                              "--jobs", "1"])
    assert r1.exit_code == 0, r1.output
    assert r2.exit_code == 0, r2.output
    assert sorted(p.name for p in (before / "masks").iterdir()) == sorted(p.name for p in (after / "masks").iterdir())
    for p in (before / "masks").iterdir():
        assert p.read_bytes() == (after / "masks" / p.name).read_bytes()
    assert not any(x.suffix == ".jsonl" for x in (src / "pngs").iterdir())  # nothing written into the PNG folder


def test_equals_form_and_flags_are_moved_too():
    params, extra = _parsed(["SRC", "--from", "voc", "--subset=train", "--void", "ignore", "out", "-j", "2"])
    assert (params["source"], params["output"], params["jobs"]) == ("SRC", "out", 2)
    assert extra == ["--subset=train", "--void", "ignore"]
    params, extra = _parsed(["SRC", "--from", "cityscapes", "--keep-void-classes", "b"])
    assert (params["source"], params["output"]) == ("SRC", "b")
    assert extra == ["--keep-void-classes"]


def test_auto_source_knows_every_readers_options():
    params, extra = _parsed(["SRC", "--subset", "val", "out"])  # --from auto: voc's --subset is known
    assert (params["source"], params["output"]) == ("SRC", "out")
    assert extra == ["--subset", "val"]


def test_unknown_option_is_still_a_clear_error(tmp_path):
    for args in ([SRC, str(tmp_path / "o"), "--no-such-option"], [SRC, "--no-such-option", str(tmp_path / "o")]):
        result = CliRunner().invoke(main, ["convert", *args, "--jobs", "1"])
        assert result.exit_code == 2
        assert "--no-such-option" in result.output
        assert not (tmp_path / "o").exists()


def test_nothing_unknown_leaves_arguments_alone():
    args = [SRC, "out", "--from", "voc", "--jobs", "1", "--", "--weird-name"]
    assert format_options_last(convert, args) == args


_GROUPS = [["--from", "coco-panoptic"], ["--to", "coco-panoptic"], ["--masks-dir", "m"], ["--mode", "instance"],
           ["--jobs", "1"], ["--image-ext=.png"], ["--overwrite"]]


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(range(len(_GROUPS) + 2)))
def test_any_order_parses_the_same(order):
    """SOURCE, OUTPUT and the option groups in any order (SOURCE before OUTPUT) parse alike."""
    tokens: list[list[str]] = [*_GROUPS, ["SRC"], ["OUT"]]
    seq = [tokens[k] for k in order]
    if seq.index(["SRC"]) > seq.index(["OUT"]):
        a, b = seq.index(["SRC"]), seq.index(["OUT"])
        seq[a], seq[b] = seq[b], seq[a]
    params, extra = _parsed([t for group in seq for t in group])
    assert (params["source"], params["output"], params["from_format"], params["to_format"], params["jobs"],
            params["mode"], params["overwrite"]) == (
        "SRC", "OUT", "coco-panoptic", "coco-panoptic", 1, "instance", True)
    assert sorted(extra) == sorted(["--masks-dir", "m", "--image-ext=.png"])
    assert extra[extra.index("--masks-dir") + 1] == "m"


def test_inspection_commands_take_format_options_first(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(FIXTURES / "coco-panoptic", src)
    (src / "panoptic").rename(src / "pngs")
    runner = CliRunner()
    first = runner.invoke(main, ["stats", "--masks-dir", str(src / "pngs"), str(src / "panoptic.json"), "--jobs", "1"])
    last = runner.invoke(main, ["stats", str(src / "panoptic.json"), "--masks-dir", str(src / "pngs"), "--jobs", "1"])
    assert first.exit_code == 0, first.output
    assert first.output == last.output


def test_inspection_commands_load_when_asked_for():
    """validate/stats/preview are imported on demand (start-up of a conversion); the lazy names are
    exactly the module's commands, listed in --help, and a conversion does not import them."""
    import subprocess
    import sys

    from segconvert.interfaces.cli import _Commands
    from segconvert.interfaces.inspect_cli import COMMANDS

    assert tuple(c.name for c in COMMANDS) == _Commands.LAZY
    result = CliRunner().invoke(main, ["--help"])
    assert all(name in result.output for name in _Commands.LAZY)
    code = ("import sys\nfrom segconvert.interfaces.cli import main\n"
            "try:\n    main(['formats'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            "print('segconvert.interfaces.inspect_cli' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
    assert CliRunner().invoke(main, ["stats", "--help"]).exit_code == 0
