"""The option groups shared by several commands (xrd_strain_plugin.cli.options): one spelling, one default."""

import pytest

from xrd_strain_plugin.cli import build_parser, main
from xrd_strain_plugin.cli.options import API_KEY_ENV, api_key, budgets, tiled_option, tiled_url

# Every command that names a reflection without requiring it, with the least else it needs.
OPTIONAL_REFLECTION = [
    [
        "simulate",
        "--profile",
        "p.csv",
        "--two-theta-deg",
        "72",
        "74",
        "0.01",
        "--resolution-fwhm-deg",
        "0.01",
        "--out",
        "c.csv",
    ],
    ["generate", "--n-curves", "10", "--out", "d"],
    ["listen", "--zmq", "h:1", "--tiled", "http://t", "--spool", "s"],
    ["flows", "retrain", "--data-root", "d"],
    ["flows", "regenerate", "--data-root", "d"],
]


@pytest.mark.parametrize("argv", OPTIONAL_REFLECTION, ids=lambda a: " ".join(a[:2]))
def test_every_command_defaults_to_the_shipped_models_reflection(argv):
    args = build_parser().parse_args(argv)
    assert (args.material, tuple(args.hkl), args.wavelength_angstrom) == ("YSZ", (4, 0, 0), 1.5406)


def test_invert_requires_the_reflection(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["invert", "f.xy", "--out", "o"])
    assert exit_.value.code == 2
    assert "--material" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["invert", "f.xy", "--material", "YSZ", "--hkl", "4", "0", "0", "--out", "o"],
        OPTIONAL_REFLECTION[2],
        OPTIONAL_REFLECTION[3],
    ],
    ids=("invert", "listen", "flows"),
)
def test_a_non_positive_wavelength_is_refused_by_every_command(argv, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--wavelength-angstrom", "-1"])
    assert "argument --wavelength-angstrom: must be > 0" in capsys.readouterr().err


def test_budgets_keep_the_engines_defaults_unless_given():
    parser = build_parser()
    refine = parser.parse_args(["flows", "refine", "--tiled-url", "http://t"])
    assert budgets(refine) == {}
    refine = parser.parse_args(
        ["flows", "refine", "--tiled-url", "http://t", "--budget-s", "2", "--global-budget-s", "0"]
    )
    assert budgets(refine, budget_option="--budget-s") == {"budget_s": 2.0, "global_budget_s": 0.0}
    invert = parser.parse_args(
        [
            "invert",
            "f.xy",
            "--material",
            "YSZ",
            "--hkl",
            "4",
            "0",
            "0",
            "--wavelength-angstrom",
            "1.5406",
            "--out",
            "o",
            "--refine",
        ]
    )
    assert budgets(invert) == {}  # the engine's own caps
    invert = parser.parse_args(
        [
            "invert",
            "f.xy",
            "--material",
            "YSZ",
            "--hkl",
            "4",
            "0",
            "0",
            "--wavelength-angstrom",
            "1.5406",
            "--out",
            "o",
            "--refine",
            "--refine-budget-s",
            "5",
        ]
    )
    assert budgets(invert) == {"budget_s": 5.0}


def test_a_bad_budget_is_one_line_naming_the_option(tmp_path, capsys):
    status = main(
        [
            "invert",
            str(tmp_path / "missing.xy"),
            "--material",
            "YSZ",
            "--hkl",
            "4",
            "0",
            "0",
            "--wavelength-angstrom",
            "1.5406",
            "--out",
            str(tmp_path),
            "--refine",
            "--refine-budget-s",
            "0",
        ]
    )
    assert status == 2
    assert "--refine-budget-s: must be > 0, got 0.0" in capsys.readouterr().err


def test_the_api_key_option_wins_over_the_variable(monkeypatch):
    parser = build_parser()
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert api_key(parser.parse_args(["results", "--tiled", "http://t"])) == "from-env"
    assert api_key(parser.parse_args(["results", "--tiled", "http://t", "--api-key", "given"])) == "given"
    monkeypatch.delenv(API_KEY_ENV)
    assert api_key(parser.parse_args(["results", "--tiled", "http://t"])) is None


# Every command that names a Tiled server, with the least else it needs, and its old spelling (or None).
TILED_COMMANDS = [
    (["listen", "--zmq", "h:1", "--spool", "s"], "--tiled"),
    (["results"], "--tiled"),
    (["results", "export", "--nexus", "f.nxs"], "--tiled"),
    (
        ["invert", "f.xy", "--material", "YSZ", "--hkl", "4", "0", "0", "--wavelength-angstrom", "1.5", "--out", "o"],
        "--publish",
    ),
    (["flows", "refine"], None),
    (["flows", "serve", "--data-root", "d"], None),
]


@pytest.mark.parametrize("argv, alias", TILED_COMMANDS, ids=lambda a: " ".join(a[:2]) if isinstance(a, list) else a)
def test_every_command_names_the_tiled_server_tiled_url_and_keeps_its_old_spelling_hidden(argv, alias, capsys):
    parser = build_parser()
    args = parser.parse_args([*argv, "--tiled-url", "http://t"])
    assert tiled_url(args) == "http://t" and tiled_option(args) == "--tiled-url"
    if alias is not None:  # deploy units and scripts written with the old spelling keep working
        args = parser.parse_args([*argv, alias, "http://old"])
        assert tiled_url(args) == "http://old" and tiled_option(args) == alias
    with pytest.raises(SystemExit):
        parser.parse_args([*argv, "--help"])
    shown = capsys.readouterr().out
    assert "--tiled-url URL" in shown
    assert "--tiled " not in shown and "--publish" not in shown  # the aliases are hidden


def test_the_tiled_server_is_given_once(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["listen", "--zmq", "h:1", "--spool", "s", "--tiled", "a", "--tiled-url", "b"])
    assert "not allowed with" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["listen", "--zmq", "h:1", "--spool", "s"])
    assert "--tiled-url" in capsys.readouterr().err
