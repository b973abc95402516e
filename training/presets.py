"""Training-set presets: the paper's Table 1 (CNN1, CNN2, CNN3) and the options beyond it.

A :class:`Preset` fixes every distribution the generator draws from. Together with a seed it
determines a dataset completely, so a preset's :meth:`Preset.to_dict` goes into each dataset
manifest and each model card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

__all__ = ["Preset", "PRESETS", "get_preset", "label_names"]

#: Shapes of the strain profile the generator knows.
STRAIN_SHAPES = ("asymmetric_gaussian", "bimodal", "flat")
DW_MODES = ("coupled",)  # "decoupled" needs DW-shape labels: not implemented yet
BACKGROUNDS = ("constant", "sloped")
NOISES = ("poisson", "poisson_multiplicative")
RESOLUTION_SHAPES = ("gaussian", "pseudo-voigt")


@dataclass(frozen=True, kw_only=True)
class Preset:
    """Distributions of one training set (ranges are ``(low, high)``, drawn uniformly).

    Parameters
    ----------
    name : str
        Preset name, e.g. ``"CNN2"``.
    thickness_nm : tuple of float
        Damaged-layer thickness t, nm.
    strain_max_percent : tuple of float
        Maximum strain e_max of the profile, percent.
    dw_min : tuple of float
        Minimum of the static Debye-Waller factor, DW_min = exp(-alpha) (1 = perfect crystal).
    resolution_fwhm_deg : tuple of float
        Gaussian resolution FWHM H, degrees of 2-theta.
    log10_background : tuple of float
        Exponent nu of the background 10**nu, counts.
    log10_scale : tuple of float
        Exponent kappa of the scale factor 10**kappa, counts at reflectivity 1.
    dynamic_range : tuple of float
        Accepted log10(I_max / I_min) of the noisy curve; curves outside are rejected and redrawn.
    step_deg : float
        Angular step of the simulated scan, degrees of 2-theta.
    n_weights : int
        B-spline weights describing the strain profile.
    weight_jitter : float
        Relative random deviation of each fitted weight (0.1 = up to +-10 %).
    n_slices : int
        Lamellae of the simulated layer.
    strain_shapes : tuple of str
        Profile shapes drawn with equal probability (paper: asymmetric Gaussian only).
    dw_mode : str
        ``"coupled"``: DW = exp(-alpha (e/e_max)**2), the paper. (A decoupled DW profile, the
        paper's suggested future work, would need its own shape labels; not implemented yet.)
    background : str
        ``"constant"`` (paper) or ``"sloped"`` (linear in 2-theta, up to a factor 3 across the scan).
    noise : str
        ``"poisson"`` (paper) or ``"poisson_multiplicative"`` (Poisson counts of an intensity with
        5 % multiplicative Gaussian noise, e.g. beam or sample fluctuations).
    paper_fraction : float
        Share of the samples drawn with the paper's *published* generator (Gen_XRD.py, issue 9)
        instead of our recipe: its strain shapes and weight rule, thickness on a 10 nm grid,
        scan windows ``eps1, eps2 ~ U(0.002, 0.025)`` rounded to 0.01 deg, and scale/background
        redrawn until ``3 < log10(scale/background) < 6`` with no dynamic-range rejection
        (:mod:`xrd_strain_training.sampling`). 0: our recipe only; 1: the paper's only.
    resolution_shape : str
        ``"gaussian"`` or ``"pseudo-voigt"`` (the published generator: eta = 0.001).
    resolution_eta : float
        Lorentzian fraction of the pseudo-Voigt.
    """

    name: str
    thickness_nm: tuple[float, float]
    strain_max_percent: tuple[float, float]
    dw_min: tuple[float, float]
    resolution_fwhm_deg: tuple[float, float] = (0.003, 0.1)
    log10_background: tuple[float, float] = (0.0, 2.0)
    log10_scale: tuple[float, float] = (3.0, 7.0)
    dynamic_range: tuple[float, float] = (3.0, 6.0)
    step_deg: float = 0.005
    n_weights: int = 10
    weight_jitter: float = 0.1
    n_slices: int = 200
    strain_shapes: tuple[str, ...] = ("asymmetric_gaussian",)
    dw_mode: str = "coupled"
    background: str = "constant"
    noise: str = "poisson"
    paper_fraction: float = 0.0
    resolution_shape: str = "gaussian"
    resolution_eta: float = 0.5

    def __post_init__(self):
        for key in (
            "thickness_nm",
            "strain_max_percent",
            "dw_min",
            "resolution_fwhm_deg",
            "log10_background",
            "log10_scale",
            "dynamic_range",
        ):
            low, high = getattr(self, key)
            if not low <= high:
                raise ValueError(f"preset {self.name}: {key} range ({low}, {high}) is not ordered")
        if self.thickness_nm[0] <= 0 or self.strain_max_percent[0] <= 0:
            raise ValueError(f"preset {self.name}: thickness and e_max must be positive")
        if not 0 < self.dw_min[0] <= self.dw_min[1] <= 1:
            raise ValueError(f"preset {self.name}: dw_min must lie in (0, 1], got {self.dw_min}")
        unknown = set(self.strain_shapes) - set(STRAIN_SHAPES)
        if unknown:
            raise ValueError(f"preset {self.name}: unknown strain shapes {sorted(unknown)}")
        if not 0.0 <= self.paper_fraction <= 1.0:
            raise ValueError(f"preset {self.name}: paper_fraction must lie in [0, 1]")
        if not 0.0 <= self.resolution_eta <= 1.0:
            raise ValueError(f"preset {self.name}: resolution_eta must lie in [0, 1]")
        for key, allowed in (
            ("dw_mode", DW_MODES),
            ("background", BACKGROUNDS),
            ("noise", NOISES),
            ("resolution_shape", RESOLUTION_SHAPES),
        ):
            if getattr(self, key) not in allowed:
                raise ValueError(f"preset {self.name}: {key} must be one of {allowed}")

    @property
    def label_names(self) -> tuple[str, ...]:
        """Names of the ``n_weights + 4`` labels, in network-output order."""
        return label_names(self.n_weights)

    def to_dict(self) -> dict:
        """Plain JSON-able description (tuples become lists)."""
        out = asdict(self)
        # Fields added after v1 are left out at their defaults, so older manifests and model
        # cards still describe (and resume) the same datasets.
        for key, default in _LATER_FIELDS.items():
            if out[key] == default:
                del out[key]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "Preset":
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def with_options(self, **changes) -> "Preset":
        """A copy with some fields changed (name suffixed unless given)."""
        if "name" not in changes:
            changes["name"] = self.name + "+" + "+".join(f"{k}={v}" for k, v in changes.items())
        return replace(self, **changes)


_LATER_FIELDS = {"paper_fraction": 0.0, "resolution_shape": "gaussian", "resolution_eta": 0.5}


def label_names(n_weights: int = 10) -> tuple[str, ...]:
    """Label names: the strain weights (percent), DW_min, t (nm), H (deg), DR (decades)."""
    return tuple(f"w{i}_percent" for i in range(n_weights)) + (
        "dw_min",
        "thickness_nm",
        "resolution_fwhm_deg",
        "dynamic_range",
    )


# Boulle & Debelle 2023, Table 1. Shared ranges (H, background, scale, DR) are the defaults above.
PRESETS: dict[str, Preset] = {
    "CNN1": Preset(name="CNN1", thickness_nm=(50.0, 1000.0), strain_max_percent=(0.2, 8.0), dw_min=(0.001, 1.0)),
    "CNN2": Preset(name="CNN2", thickness_nm=(100.0, 1000.0), strain_max_percent=(0.5, 8.0), dw_min=(0.05, 1.0)),
    "CNN3": Preset(name="CNN3", thickness_nm=(100.0, 1000.0), strain_max_percent=(0.5, 2.0), dw_min=(0.05, 1.0)),
}
# The paper's *published* generator (issue 9): what its Table 2 was measured on. Held-out test
# sets are drawn from these; 200 lamellae (the published code uses 500; our exact recursion
# sub-slices where the coupling needs it).
_PAPER_RECIPE = dict(
    paper_fraction=1.0, log10_background=(0.0, 1.7), resolution_shape="pseudo-voigt", resolution_eta=0.001
)
PRESETS["CNN2-PAPER"] = PRESETS["CNN2"].with_options(name="CNN2-PAPER", **_PAPER_RECIPE)
PRESETS["CNN3-PAPER"] = PRESETS["CNN3"].with_options(name="CNN3-PAPER", **_PAPER_RECIPE)
# Training superset: 60 % the published recipe, 40 % ours with every shape option (bimodal and
# flat profiles, plateaus, our narrower windows and dynamic-range rule); backgrounds up to 10**2.
PRESETS["CNN2-SUPERSET"] = PRESETS["CNN2"].with_options(
    name="CNN2-SUPERSET",
    paper_fraction=0.6,
    resolution_shape="pseudo-voigt",
    resolution_eta=0.001,
    strain_shapes=("asymmetric_gaussian", "bimodal", "flat"),
)
PRESETS["CNN3-SUPERSET"] = PRESETS["CNN3"].with_options(
    name="CNN3-SUPERSET",
    paper_fraction=0.6,
    resolution_shape="pseudo-voigt",
    resolution_eta=0.001,
    strain_shapes=("asymmetric_gaussian", "bimodal", "flat"),
)


def get_preset(name: str, **options) -> Preset:
    """Look up a preset by name, optionally with options beyond the paper.

    Parameters
    ----------
    name : str
        ``"CNN1"``, ``"CNN2"``, ``"CNN3"`` (Table 1 with our recipe), ``"CNN2-PAPER"``,
        ``"CNN3-PAPER"`` (the published generator's recipe) or ``"CNN2-SUPERSET"``,
        ``"CNN3-SUPERSET"`` (both recipes, every shape option), case-insensitive.
    **options
        Fields to override, e.g. ``strain_shapes=("asymmetric_gaussian",
        "bimodal", "flat")``, ``background="sloped"``, ``noise="poisson_multiplicative"``.

    Raises
    ------
    KeyError
        If the name is unknown (the message lists the known ones).
    """
    try:
        preset = PRESETS[name.upper()]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {sorted(PRESETS)}") from None
    return preset.with_options(**options) if options else preset
