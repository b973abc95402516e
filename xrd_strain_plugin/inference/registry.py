"""Model registry: every bundle with its card and measured metrics, and the current model per key.

A registry is a directory; the bundles shipped with the package are its read-only first
entries (``xrd_strain_plugin/models/<dir>``, today ``ysz-400-cuka1-cnn2@1``)::

    <root>/<model_id>/<version>/          a bundle (model.keras + card.json), never changed once added
    <root>/<model_id>/<version>/evaluations/<test fingerprint>.json
                                          Table-2 row measured on one held-out test set
    <root>/current/<key>.json             {"model": "id@version", "promoted_utc", "reason", "previous"}
    <root>/history.jsonl                  one line per event (added, promoted, rejected), append-only

A *key* is what a model is good for: (material, reflection, wavelength), e.g. ``ysz-400-1.5406A``.
The current model of a key is the one its pointer names; without a pointer, the shipped bundle for
that key. Pointers are replaced atomically (``os.replace``), so a reader sees the old or the new
one, never half of one, and :meth:`ModelRegistry.pointer_token` (one ``stat``) tells cheaply
whether a pointer changed: that is how a running live plugin picks up a promoted model between
runs (:class:`CurrentModel`).

Nothing here imports Keras: resolving ``model_id[@version]`` reads cards only. The weights are
loaded by :class:`~xrd_strain_plugin.inference.invert.Inverter` when a model is used.

Examples
--------
>>> from xrd_strain_plugin.inference.registry import ModelRegistry, ModelKey
>>> registry = ModelRegistry()                          # $XRD_STRAIN_REGISTRY or the user's data dir
>>> registry.resolve("ysz-400-cuka1-cnn2@1").card.metrics["a_t"]   # doctest: +SKIP
0.55
>>> registry.current(ModelKey(material="YSZ", hkl=(4, 0, 0), wavelength_angstrom=1.5406)).ref
'ysz-400-cuka1-cnn2@1'
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import re
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from xrd_strain_plugin.inference.bundle import (
    CARD_FILE,
    MODEL_FILE,
    RELATIVE_TOLERANCE,
    BundleError,
    ModelCard,
    read_card,
    sha256_of,
)

__all__ = [
    "ModelKey",
    "RegistryEntry",
    "ModelRegistry",
    "RegistryError",
    "PromotionGate",
    "GateDecision",
    "CurrentModel",
    "SHIPPED_MODELS",
    "REGISTRY_ENV",
    "default_root",
    "parse_ref",
    "shipped_bundle_path",
]

log = logging.getLogger(__name__)

#: Bundles shipped with the package (read-only first entries of every registry).
SHIPPED_MODELS = Path(__file__).resolve().parent.parent / "models"
#: Environment variable naming the registry directory.
REGISTRY_ENV = "XRD_STRAIN_REGISTRY"
#: The shipped default (YSZ 400, Cu K-alpha1, CNN2).
DEFAULT_MODEL = "ysz-400-cuka1-cnn2"
_REF = re.compile(r"^(?P<id>[A-Za-z0-9][A-Za-z0-9._+-]*)(?:@(?P<version>[A-Za-z0-9._+-]+))?$")


class RegistryError(BundleError):
    """A model reference that names nothing, or a registry operation that cannot be done."""


def default_root() -> Path:
    """``$XRD_STRAIN_REGISTRY``, else ``$XDG_DATA_HOME/xrd-strain/registry`` (``~/.local/share``)."""
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "xrd-strain" / "registry"


def shipped_bundle_path(name: str = DEFAULT_MODEL) -> Path:
    """Directory of a bundle shipped with the package."""
    return SHIPPED_MODELS / name


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``"model_id[@version]"`` -> ``(model_id, version or None)``; raises :class:`RegistryError`."""
    match = _REF.match(str(ref).strip())
    if not match:
        raise RegistryError(f"model reference {ref!r} is not of the form model_id[@version]")
    return match["id"], match["version"]


def _version_key(version: str):
    # "10" after "9"; non-numeric parts compare as text after numbers.
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.+-]", version))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class ModelKey:
    """What a model is for: material, reflection and wavelength (a pointer per key).

    Attributes
    ----------
    material : str
        Material name (or CIF path; its stem names the key).
    hkl : tuple of int
    wavelength_angstrom : float
    """

    material: str
    hkl: tuple[int, int, int]
    wavelength_angstrom: float

    def __post_init__(self):
        object.__setattr__(self, "hkl", tuple(int(i) for i in self.hkl))
        object.__setattr__(self, "wavelength_angstrom", float(self.wavelength_angstrom))

    @classmethod
    def from_card(cls, card: ModelCard) -> "ModelKey":
        return cls(material=card.material, hkl=card.hkl, wavelength_angstrom=card.wavelength_angstrom)

    @property
    def slug(self) -> str:
        """File-name form, e.g. ``ysz-400-1.5406A`` (negative indices keep their sign)."""
        material = re.sub(r"[^a-z0-9]+", "_", Path(self.material).stem.lower()).strip("_")
        hkl = (
            "".join(str(i) for i in self.hkl)
            if all(0 <= i < 10 for i in self.hkl)
            else "_".join(str(i) for i in self.hkl)
        )
        return f"{material}-{hkl}-{self.wavelength_angstrom:.4f}A"

    def matches(self, card: ModelCard) -> bool:
        """True if ``card`` was trained for this key (material by name, wavelength within 0.2 %)."""
        return (
            Path(card.material).stem.lower() == Path(self.material).stem.lower()
            and tuple(card.hkl) == self.hkl
            and math.isclose(card.wavelength_angstrom, self.wavelength_angstrom, rel_tol=RELATIVE_TOLERANCE)
        )


@dataclass(frozen=True, kw_only=True)
class RegistryEntry:
    """One bundle of the registry.

    Attributes
    ----------
    path : Path
        Bundle directory (pass it to :class:`~xrd_strain_plugin.inference.invert.Inverter`).
    card : ModelCard
    shipped : bool
        True for a bundle shipped with the package.
    """

    path: Path
    card: ModelCard = field(repr=False)
    shipped: bool = False

    @property
    def ref(self) -> str:
        """``model_id@version``."""
        return f"{self.card.model_id}@{self.card.version}"

    @property
    def key(self) -> ModelKey:
        return ModelKey.from_card(self.card)

    def evaluations(self) -> dict[str, dict]:
        """Table-2 rows measured on held-out test sets, by test-set fingerprint (card metrics under
        the card's own test fingerprint, when it names one)."""
        out = {}
        fp = self.card.dataset.get("test_fingerprint")
        if fp and self.card.metrics:
            out[fp] = dict(self.card.metrics)
        folder = self.path / "evaluations"
        if folder.is_dir():
            for item in sorted(folder.glob("*.json")):
                out[item.stem] = json.loads(item.read_text())
        return out


@dataclass(frozen=True, kw_only=True)
class PromotionGate:
    """When a candidate may replace the current model.

    The candidate is promoted only if, on the same held-out test set, no accuracy drops by more
    than its tolerance and the test MSE does not grow by more than ``mse_tolerance`` (relative).

    Attributes
    ----------
    tolerances : dict
        Allowed drop per accuracy (absolute fraction; 0.0 = must not regress at all), over the
        paper's six accuracies ``a_t, a_emax, a_dw, a_h, a_dr, a_strain``.
    mse_tolerance : float or None
        Allowed relative increase of the test MSE; None ignores the MSE.
    min_gain : dict
        Required improvement per accuracy (absolute), e.g. ``{"a_strain": 0.01}``; empty: ties
        are promoted.
    """

    tolerances: dict = field(
        default_factory=lambda: {k: 0.0 for k in ("a_t", "a_emax", "a_dw", "a_h", "a_dr", "a_strain")}
    )
    mse_tolerance: float | None = 0.0
    min_gain: dict = field(default_factory=dict)

    def __post_init__(self):
        bad = {
            k: v
            for k, v in {**self.tolerances, **self.min_gain}.items()
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)
        }
        if bad:
            raise ValueError(f"promotion thresholds must be finite and >= 0, got {bad}")

    def decide(self, candidate: dict, current: dict | None) -> "GateDecision":
        """Compare two Table-2 rows measured on the same test set.

        Parameters
        ----------
        candidate, current : dict
            ``a_*`` accuracies (fractions) and ``mse_test``; ``current`` None promotes (no model).
        """
        if current is None:
            return GateDecision(promote=True, reasons=("no current model for this key",))
        reasons = []
        for key, tol in self.tolerances.items():
            if key not in candidate or key not in current:
                reasons.append(f"{key} missing from the metrics")
                continue
            if candidate[key] < current[key] - tol:
                reasons.append(
                    f"{key} regressed: {100 * candidate[key]:.1f} % < {100 * current[key]:.1f} % - {100 * tol:.1f}"
                )
        for key, gain in self.min_gain.items():
            if candidate.get(key, -1.0) < current.get(key, 0.0) + gain:
                reasons.append(f"{key} gained less than {100 * gain:.1f} points")
        if self.mse_tolerance is not None and "mse_test" in candidate and "mse_test" in current:
            if candidate["mse_test"] > current["mse_test"] * (1 + self.mse_tolerance):
                reasons.append(
                    f"test MSE grew: {candidate['mse_test']:.3e} > "
                    f"{current['mse_test']:.3e} x (1 + {self.mse_tolerance:g})"
                )
        if reasons:
            return GateDecision(promote=False, reasons=tuple(reasons))
        return GateDecision(promote=True, reasons=("no accuracy regressed",))


@dataclass(frozen=True, kw_only=True)
class GateDecision:
    """Outcome of :meth:`PromotionGate.decide` (``reasons`` explain it in words)."""

    promote: bool
    reasons: tuple[str, ...]


class ModelRegistry:
    """Find, add and promote model bundles.

    Parameters
    ----------
    root : path, optional
        Registry directory (created when something is written); default :func:`default_root`.
    shipped : path or None
        Directory of read-only bundles listed first (default: the package's ``models``);
        None for a registry without them.
    """

    def __init__(self, root=None, *, shipped=SHIPPED_MODELS):
        self.root = Path(root) if root is not None else default_root()
        self.shipped = Path(shipped) if shipped is not None else None

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # -- reading -----------------------------------------------------------------------------
    def entries(self) -> list[RegistryEntry]:
        """Every bundle: the shipped ones first, then the registry's by model id and version."""
        out, seen = [], set()
        if self.shipped is not None and self.shipped.is_dir():
            for path in sorted(p for p in self.shipped.iterdir() if (p / CARD_FILE).is_file()):
                entry = RegistryEntry(path=path, card=read_card(path), shipped=True)
                out.append(entry)
                seen.add(entry.ref)
        if self.root.is_dir():
            found = []
            for card_path in self.root.glob(f"*/*/{CARD_FILE}"):
                entry = RegistryEntry(path=card_path.parent, card=read_card(card_path.parent))
                if entry.ref not in seen:
                    found.append(entry)
            found.sort(key=lambda e: (e.card.model_id, _version_key(e.card.version)))
            out.extend(found)
        return out

    def resolve(self, ref) -> RegistryEntry:
        """The bundle named by ``ref``.

        Parameters
        ----------
        ref : str or Path
            ``model_id@version``; ``model_id`` alone (its current version where a pointer names
            it, else its newest); or a bundle directory.

        Raises
        ------
        RegistryError
            If nothing matches (the message lists what the registry holds).
        """
        path = Path(str(ref)).expanduser()
        if path.exists() or os.sep in str(ref):
            # A path: read_card names what is wrong with it (not a directory, no card ...).
            return RegistryEntry(path=path, card=read_card(path))
        model_id, version = parse_ref(str(ref))
        candidates = [e for e in self.entries() if e.card.model_id == model_id]
        if version is not None:
            candidates = [e for e in candidates if e.card.version == version]
        if not candidates:
            known = ", ".join(e.ref for e in self.entries()) or "nothing"
            raise RegistryError(f"no model {ref!r} in the registry {self.root} (it holds: {known})")
        if version is None:
            current = self._pointer(ModelKey.from_card(candidates[0].card))
            for entry in candidates:
                if current is not None and entry.ref == current.get("model"):
                    return entry
            return max(candidates, key=lambda e: _version_key(e.card.version))
        return candidates[0]

    def current(self, key: ModelKey) -> RegistryEntry:
        """The current model for ``key``: the pointer's, else a shipped bundle for the key.

        Raises
        ------
        RegistryError
            If no pointer exists and no shipped bundle fits the key.
        """
        pointer = self._pointer(key)
        if pointer is not None:
            return self.resolve(pointer["model"])
        for entry in self.entries():
            if entry.shipped and key.matches(entry.card):
                return entry
        raise RegistryError(
            f"no model for {key.material} {key.hkl} at {key.wavelength_angstrom:g} A "
            f"in {self.root}; train one, then 'xrd-strain flows promote'"
        )

    def pointer_token(self, key: ModelKey):
        """A cheap fingerprint of ``key``'s pointer (one ``stat``): changes whenever a model is
        promoted for the key; None while there is no pointer."""
        try:
            st = (self.root / "current" / f"{key.slug}.json").stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def history(self) -> list[dict]:
        """Events (``added``, ``promoted``, ``rejected``), oldest first."""
        path = self.root / "history.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def next_version(self, model_id: str) -> str:
        """One more than the highest integer version of ``model_id`` (``"1"`` for a new id)."""
        versions = [
            int(e.card.version) for e in self.entries() if e.card.model_id == model_id and e.card.version.isdigit()
        ]
        return str(max(versions, default=0) + 1)

    # -- writing -----------------------------------------------------------------------------
    def add(self, bundle_dir, *, evaluation: dict | None = None, test_fingerprint: str | None = None) -> RegistryEntry:
        """Copy a bundle into the registry (idempotent for the same weights).

        Parameters
        ----------
        bundle_dir : path
            A bundle directory (its card names model id and version).
        evaluation, test_fingerprint : dict, str, optional
            A Table-2 row measured on the test set with that fingerprint, kept beside it.

        Raises
        ------
        RegistryError
            If ``model_id@version`` is already registered with other weights.
        """
        src = Path(bundle_dir)
        card = read_card(src)
        if not (src / MODEL_FILE).is_file():
            raise RegistryError(f"model bundle {src} has no {MODEL_FILE}")
        if sha256_of(src / MODEL_FILE) != card.weights_sha256:
            raise RegistryError(f"{src / MODEL_FILE} does not match its card's sha256; not added")
        target = self.root / card.model_id / card.version
        existing = next((e for e in self.entries() if e.ref == f"{card.model_id}@{card.version}"), None)
        if existing is not None:
            if existing.card.weights_sha256 != card.weights_sha256:
                raise RegistryError(
                    f"{existing.ref} is already registered with other weights "
                    f"({existing.path}); give the new model another version"
                )
            entry = existing
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / f".{card.version}.{uuid.uuid4().hex}.tmp"
            shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("*.tmp", "evaluations"))
            try:
                os.rename(tmp, target)  # atomic; fails if a concurrent add won
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
                if not (target / CARD_FILE).is_file():
                    raise
            entry = RegistryEntry(path=target, card=read_card(target))
            self._log({"event": "added", "model": entry.ref, "metrics": card.metrics})
        if evaluation is not None:
            if test_fingerprint is None:
                raise ValueError("an evaluation needs the test set's fingerprint")
            self.record_evaluation(entry.ref, test_fingerprint, evaluation)
        return entry

    def record_evaluation(self, ref: str, test_fingerprint: str, row: dict) -> None:
        """Keep a Table-2 row measured on a test set beside a registered bundle (shipped bundles
        keep theirs in the registry directory, which mirrors their id and version)."""
        entry = self.resolve(ref)
        folder = (self.root / entry.card.model_id / entry.card.version if entry.shipped else entry.path) / "evaluations"
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / f"{test_fingerprint}.json", row)

    def evaluation(self, ref: str, test_fingerprint: str) -> dict | None:
        """The Table-2 row of ``ref`` on the test set ``test_fingerprint``, if measured."""
        entry = self.resolve(ref)
        rows = entry.evaluations()
        if entry.shipped:
            extra = self.root / entry.card.model_id / entry.card.version / "evaluations"
            if (extra / f"{test_fingerprint}.json").is_file():
                rows[test_fingerprint] = json.loads((extra / f"{test_fingerprint}.json").read_text())
        return rows.get(test_fingerprint)

    def promote(self, ref: str, *, reason: str = "") -> RegistryEntry:
        """Make ``ref`` the current model of its key (atomic pointer replacement)."""
        entry = self.resolve(ref)
        key = entry.key
        previous = self._pointer(key)
        if previous is None:
            try:
                previous = {"model": self.current(key).ref}
            except RegistryError:
                previous = None
        pointer = {
            "model": entry.ref,
            "promoted_utc": _now(),
            "reason": reason,
            "previous": previous["model"] if previous else None,
            "key": {"material": key.material, "hkl": list(key.hkl), "wavelength_angstrom": key.wavelength_angstrom},
        }
        folder = self.root / "current"
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / f"{key.slug}.json", pointer)
        self._log(
            {
                "event": "promoted",
                "model": entry.ref,
                "key": key.slug,
                "reason": reason,
                "previous": pointer["previous"],
            }
        )
        return entry

    def log_rejection(self, ref: str, *, reasons) -> None:
        """Record that a candidate was kept but not promoted, and why."""
        self._log({"event": "rejected", "model": ref, "reasons": list(reasons)})

    # -- internals ---------------------------------------------------------------------------
    def _pointer(self, key: ModelKey) -> dict | None:
        path = self.root / "current" / f"{key.slug}.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{path} is not valid JSON: {exc}") from exc

    def _log(self, event: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"utc": _now(), **event}, default=float, sort_keys=True) + "\n"
        # One write call in append mode: lines from concurrent writers do not interleave.
        with open(self.root / "history.jsonl", "a") as handle:
            handle.write(line)


class CurrentModel:
    """An inverter that follows the registry's current model for one key.

    Has the :class:`~xrd_strain_plugin.inference.invert.Inverter` interface (``invert``,
    ``bundle``, ``card``) plus :meth:`refresh`, which the live callback calls before each curve:
    when the key's pointer changed (one ``stat``) and a new run began, the newly promoted bundle
    is loaded (and warmed up) and used from then on. A bundle that fails to load is logged and
    the previous model stays in use. Nothing is loaded again while the pointer is unchanged.

    Parameters
    ----------
    registry : ModelRegistry
    key : ModelKey
    warm_up : callable, optional
        ``warm_up(inverter)`` run on each newly loaded model before it is used.
    """

    def __init__(self, registry: ModelRegistry, key: ModelKey, *, warm_up=None):
        self.registry = registry
        self.key = key
        self._warm_up = warm_up
        self._lock = threading.Lock()
        self._token = registry.pointer_token(key)
        self._inverter = self._load(registry.current(key))
        self._run = None
        self.reloads = 0

    def _load(self, entry: RegistryEntry):
        from xrd_strain_plugin.inference.invert import Inverter

        inverter = Inverter(entry.path)
        if self._warm_up is not None:
            self._warm_up(inverter)
        return inverter

    @property
    def inverter(self):
        """The :class:`Inverter` in use now."""
        return self._inverter

    @property
    def bundle(self):
        return self._inverter.bundle

    @property
    def card(self):
        return self._inverter.bundle.card

    def refresh(self, run=None) -> bool:
        """Load the current model if the pointer changed; return True if the model changed.

        Parameters
        ----------
        run : hashable, optional
            Identifier of the run the next curve belongs to: the model changes only when a new
            run begins, so the curves of one run are answered by one model.
        """
        with self._lock:
            if run is not None:
                if run == self._run:
                    return False
                self._run = run
            token = self.registry.pointer_token(self.key)
            if token == self._token:
                return False
            self._token = token
            try:
                entry = self.registry.current(self.key)
                if (entry.ref, entry.card.weights_sha256) == (
                    f"{self.card.model_id}@{self.card.version}",
                    self.card.weights_sha256,
                ):
                    return False
                self._inverter = self._load(entry)
            except Exception:  # keep answering with the model we have
                log.exception(
                    "xrd-strain: could not load the newly promoted model for %s; keeping %s@%s",
                    self.key.slug,
                    self.card.model_id,
                    self.card.version,
                )
                return False
            self.reloads += 1
            log.info("xrd-strain: now using %s for %s", entry.ref, self.key.slug)
            return True

    def invert(self, two_theta_deg, intensity, reflection):
        """Invert with the model in use (see :meth:`Inverter.invert`)."""
        return self._inverter.invert(two_theta_deg, intensity, reflection)

    def invert_many(self, curves, reflection) -> list:
        """Invert a batch with the model in use (see :meth:`Inverter.invert_many`)."""
        return self._inverter.invert_many(curves, reflection)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=float) + "\n")
    os.replace(tmp, path)
