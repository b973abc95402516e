"""``xrd-strain flows``: every subcommand and option explained; the registry commands for real;
the deployments declare the three schedules."""

from __future__ import annotations

import argparse
import json
import shutil

from xrd_strain_plugin import cli
from xrd_strain_plugin.inference.registry import SHIPPED_MODELS, ModelKey, ModelRegistry


def test_every_flows_subcommand_and_option_is_explained():
    parser = cli.build_parser()
    (top,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    (inner,) = [a for a in top.choices["flows"]._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(inner.choices) == {"serve", "regenerate", "retrain", "refine", "trigger", "models", "promote"}
    for name, sub in inner.choices.items():
        assert sub.description and sub.get_default("func") is not None, name
        for action in sub._actions:
            assert action.help or action.dest == "help", f"flows {name} {action.dest} has no help"


def test_models_and_promote_on_a_real_registry(tmp_path, capsys):
    registry = ModelRegistry(tmp_path / "reg")
    bundle = tmp_path / "b2"
    shutil.copytree(SHIPPED_MODELS / "ysz-400-cuka1-cnn2", bundle)
    card = json.loads((bundle / "card.json").read_text())
    (bundle / "card.json").write_text(json.dumps({**card, "version": "2"}))
    registry.add(bundle)

    assert cli.main(["flows", "models", "--registry", str(registry.root)]) == 0
    out = capsys.readouterr().out
    assert "* ysz-400-cuka1-cnn2@1" in out and "  ysz-400-cuka1-cnn2@2" in out and "55%" in out

    assert (
        cli.main(["flows", "promote", "ysz-400-cuka1-cnn2@2", "--registry", str(registry.root), "--reason", "test"])
        == 0
    )
    key = ModelKey(material="YSZ", hkl=(4, 0, 0), wavelength_angstrom=1.5406)
    assert registry.current(key).ref == "ysz-400-cuka1-cnn2@2"
    assert cli.main(["flows", "models", "--registry", str(registry.root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert [r["ref"] for r in rows if r["current"]] == ["ysz-400-cuka1-cnn2@2"]

    assert cli.main(["flows", "promote", "nope@1", "--registry", str(registry.root)]) == 2
    assert "REF: no model 'nope@1'" in capsys.readouterr().err


def test_deployments_declare_the_three_schedules():
    from xrd_strain_flows.deployments import FlowSettings, Schedules, build_deployments

    deployments = build_deployments(
        FlowSettings(data_root="/data", tiled_url="http://t/api/v1", scheduler_address="tcp://dask:8786"),
        Schedules(refine_interval_s=120),
    )
    by_name = {d.name: d for d in deployments}
    assert by_name["nightly-regeneration"].schedules[0].schedule.cron == "0 1 * * *"
    assert by_name["nightly-regeneration"].parameters["scheduler_address"] == "tcp://dask:8786"
    assert by_name["weekly-retraining"].schedules[0].schedule.cron == "0 3 * * 0"
    assert by_name["refine-new-results"].schedules[0].schedule.interval.total_seconds() == 120
    assert by_name["refine-new-results"].entrypoint == "xrd_strain_flows.refine.refine_new_results"
    assert len(build_deployments(FlowSettings(data_root="/data"))) == 2  # no Tiled: no refinement
