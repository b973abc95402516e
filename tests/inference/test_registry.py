"""Model registry: the shipped bundle is the first entry, refs resolve without Keras, promotion
moves an atomic pointer whose change is seen by one stat, candidates are kept, the gate decides."""

import dataclasses
import json
import shutil
import subprocess
import sys

import pytest

from xrd_strain_plugin.inference.bundle import CARD_FILE, read_card
from xrd_strain_plugin.inference.registry import (
    SHIPPED_MODELS,
    GateDecision,
    ModelKey,
    ModelRegistry,
    PromotionGate,
    RegistryError,
    parse_ref,
)

YSZ = ModelKey(material="YSZ", hkl=(4, 0, 0), wavelength_angstrom=1.5406)
#: The shipped default's version (read from its card, so shipping a newer model moves it).
SHIPPED_VERSION = read_card(SHIPPED_MODELS / "ysz-400-cuka1-cnn2").version
SHIPPED = f"ysz-400-cuka1-cnn2@{SHIPPED_VERSION}"
#: Candidate versions above the shipped one.
NEXT, AFTER = str(int(SHIPPED_VERSION) + 1), str(int(SHIPPED_VERSION) + 2)


def copy_bundle(tmp_path, name, *, version, metrics=None, model_id="ysz-400-cuka1-cnn2"):
    """A real bundle: the shipped weights under another card (id, version, metrics)."""
    src = SHIPPED_MODELS / "ysz-400-cuka1-cnn2"
    dst = tmp_path / name
    shutil.copytree(src, dst)
    card = json.loads((dst / CARD_FILE).read_text())
    card.update(version=version, model_id=model_id)
    if metrics is not None:
        card["metrics"] = metrics
    (dst / CARD_FILE).write_text(json.dumps(card))
    return dst


def test_shipped_bundle_is_the_first_entry_and_current_without_a_pointer(tmp_path):
    registry = ModelRegistry(tmp_path / "reg")
    entries = registry.entries()
    assert entries[0].ref == SHIPPED and entries[0].shipped
    assert registry.current(YSZ).ref == SHIPPED
    assert registry.pointer_token(YSZ) is None
    # Cu K-alpha1 within the card tolerance is the same key; another reflection has no model.
    assert registry.current(dataclasses.replace(YSZ, wavelength_angstrom=1.54056)).ref == SHIPPED
    with pytest.raises(RegistryError, match=r"no model for YSZ \(2, 0, 0\)"):
        registry.current(dataclasses.replace(YSZ, hkl=(2, 0, 0)))


def test_refs_resolve_and_unknown_refs_name_what_exists(tmp_path):
    registry = ModelRegistry(tmp_path / "reg")
    assert registry.resolve("ysz-400-cuka1-cnn2").ref == SHIPPED
    assert registry.resolve(SHIPPED).path == SHIPPED_MODELS / "ysz-400-cuka1-cnn2"
    assert registry.resolve(str(SHIPPED_MODELS / "ysz-400-cuka1-cnn2")).ref == SHIPPED
    with pytest.raises(RegistryError, match=f"ysz-400-cuka1-cnn2@77.*it holds: {SHIPPED}"):
        registry.resolve("ysz-400-cuka1-cnn2@77")
    with pytest.raises(RegistryError, match="not of the form"):
        parse_ref("bad ref@")
    assert parse_ref("a-b@2") == ("a-b", "2") and parse_ref("a") == ("a", None)


def test_resolving_reads_no_keras():
    probe = (
        "import sys; from xrd_strain_plugin.inference.registry import ModelRegistry, ModelKey;"
        f"r = ModelRegistry('/nonexistent'); e = r.resolve('{SHIPPED}');"
        "r.current(ModelKey(material='YSZ', hkl=(4,0,0), wavelength_angstrom=1.5406));"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_add_promote_history_and_pointer_token(tmp_path):
    registry = ModelRegistry(tmp_path / "reg")
    v2 = registry.add(copy_bundle(tmp_path, "b2", version=NEXT), evaluation={"a_t": 0.6}, test_fingerprint="fp")
    assert v2.ref == f"ysz-400-cuka1-cnn2@{NEXT}" and v2.path.parent.parent == registry.root
    assert registry.add(copy_bundle(tmp_path, "b2again", version=NEXT)).path == v2.path  # idempotent
    assert registry.evaluation(f"ysz-400-cuka1-cnn2@{NEXT}", "fp") == {"a_t": 0.6}
    assert registry.next_version("ysz-400-cuka1-cnn2") == AFTER
    # Adding a candidate does not change the current model.
    assert registry.current(YSZ).ref == SHIPPED and registry.pointer_token(YSZ) is None
    registry.promote(v2.ref, reason="test")
    token = registry.pointer_token(YSZ)
    assert token is not None and registry.current(YSZ).ref == v2.ref
    assert registry.resolve("ysz-400-cuka1-cnn2").ref == v2.ref  # bare id: the current version
    registry.promote(SHIPPED, reason="roll back")
    assert registry.pointer_token(YSZ) != token and registry.current(YSZ).ref == SHIPPED
    pointer = json.loads((registry.root / "current" / f"{YSZ.slug}.json").read_text())
    assert pointer["previous"] == v2.ref and pointer["reason"] == "roll back"
    events = [(e["event"], e["model"]) for e in registry.history()]
    assert events == [("added", v2.ref), ("promoted", v2.ref), ("promoted", SHIPPED)]
    # Shipped bundles keep their evaluations on other test sets in the registry directory.
    registry.record_evaluation(SHIPPED, "fp", {"a_t": 0.5})
    assert registry.evaluation(SHIPPED, "fp") == {"a_t": 0.5}
    assert not (SHIPPED_MODELS / "ysz-400-cuka1-cnn2" / "evaluations").exists()


def test_same_ref_with_other_weights_and_corrupt_bundles_are_refused(tmp_path):
    registry = ModelRegistry(tmp_path / "reg")
    registry.add(copy_bundle(tmp_path, "b2", version=NEXT))
    other = copy_bundle(tmp_path, "other", version=NEXT)
    card = json.loads((other / CARD_FILE).read_text())
    (other / "model.keras").write_bytes(b"not the same weights")
    card["weights_sha256"] = __import__("hashlib").sha256(b"not the same weights").hexdigest()
    (other / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(RegistryError, match="already registered with other weights"):
        registry.add(other)
    corrupt = copy_bundle(tmp_path, "corrupt", version=AFTER)
    (corrupt / "model.keras").write_bytes(b"garbage")
    with pytest.raises(RegistryError, match="does not match its card's sha256"):
        registry.add(corrupt)
    assert [e.ref for e in registry.entries()] == [SHIPPED, f"ysz-400-cuka1-cnn2@{NEXT}"]
    assert read_card(registry.resolve(f"ysz-400-cuka1-cnn2@{NEXT}").path).version == NEXT


def test_gate_promotes_only_without_regression():
    current = {"a_t": 0.5, "a_emax": 0.5, "a_dw": 0.5, "a_h": 0.8, "a_dr": 1.0, "a_strain": 0.2, "mse_test": 0.01}
    better = {**current, "a_strain": 0.3, "mse_test": 0.009}
    worse = {**current, "a_strain": 0.15}
    gate = PromotionGate()
    assert gate.decide(better, current).promote
    decision = gate.decide(worse, current)
    assert not decision.promote and "a_strain regressed: 15.0 % < 20.0 %" in decision.reasons[0]
    assert PromotionGate(tolerances={"a_strain": 0.1}).decide(worse, current).promote
    assert not PromotionGate(min_gain={"a_strain": 0.2}).decide(better, current).promote
    assert not gate.decide({**better, "mse_test": 0.02}, current).promote
    assert gate.decide(worse, None) == GateDecision(promote=True, reasons=("no current model for this key",))
    with pytest.raises(ValueError, match="finite and >= 0"):
        PromotionGate(tolerances={"a_t": -0.1})


def test_current_model_follows_the_pointer_between_runs_and_survives_a_bad_bundle(tmp_path):
    from xrd_strain_plugin.inference.registry import CurrentModel

    registry = ModelRegistry(tmp_path / "reg")
    v2 = registry.add(copy_bundle(tmp_path, "b2", version=NEXT))
    v3 = registry.add(copy_bundle(tmp_path, "b3", version=AFTER))
    model = CurrentModel(registry, YSZ)
    assert model.card.version == SHIPPED_VERSION and not model.refresh("run-a")
    registry.promote(v2.ref)
    assert not model.refresh("run-a")  # same run: no switch in the middle of a run
    assert model.refresh("run-b") and model.card.version == NEXT and model.reloads == 1
    assert not model.refresh("run-c")  # pointer unchanged: nothing reloaded
    (v3.path / "model.keras").write_bytes(b"corrupted after registration")
    registry.promote(v3.ref)
    assert not model.refresh("run-d")  # fails to load: logged, the old model stays
    assert model.card.version == NEXT and model.reloads == 1
