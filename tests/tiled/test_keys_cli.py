"""The scoped-key maker's command line: one spelling of the server option, the old one still read."""

import pytest

from xrd_strain_plugin.tiled import keys


def test_the_server_option_is_required_and_named(capsys):
    with pytest.raises(SystemExit) as exc:
        keys.main([])
    assert exc.value.code == 2 and "--tiled-url" in capsys.readouterr().err


@pytest.mark.parametrize("spelling", ["--tiled-url", "--tiled"])
def test_both_spellings_reach_the_password_check(spelling, monkeypatch, capsys):
    monkeypatch.delenv("TILED_ADMIN_PASSWORD", raising=False)
    assert keys.main([spelling, "http://127.0.0.1:9"]) == 2
    assert "TILED_ADMIN_PASSWORD" in capsys.readouterr().err
    assert keys.API_KEY_ENV == "TILED_API_KEY"
