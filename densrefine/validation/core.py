"""`validate`: the validation numbers of one model (and map) in one JSON-ready report."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ..errors import input_error
from . import clashes, qscore, ramachandran, rotamers

log = logging.getLogger("densrefine")


@dataclass
class ValidationReport:
    """Validation numbers of one model; ``to_dict()`` is what the stats JSON stores.

    JSON fields (``to_dict()``)
    ---------------------------
    ``ramachandran``: ``n`` (residues with φ and ψ), ``favored``, ``allowed``,
    ``outlier`` (counts), ``favored_pct``, ``allowed_pct``, ``outlier_pct`` (% of n),
    ``outliers`` (list of "chain RES seq class φ=… ψ=…", degrees).
    ``rotamers``: ``n`` (side chains with χ), ``outlier``, ``outlier_pct`` (%),
    ``outliers`` (list of "chain RES seq score=…%").
    ``clashes``: ``clashscore`` (serious overlaps ≥ 0.4 Å per 1000 atoms, H included),
    ``clashes`` (pairs), ``n_atoms`` (atoms counted, H included, no water),
    ``n_h_added``, ``worst`` (list of "atom – atom overlap Å").
    ``qscore`` (only with a map): ``q_mean`` (mean over heavy atoms, −1…1), ``sigma`` (Å),
    ``n_atoms``, ``chains`` ({chain: mean Q}), ``lowest`` (lowest residues),
    ``residues`` (list of ["chain", seq, "icode", "RES", Q]).
    ``seconds``: wall time per part (s). ``methods``: one line per part naming the method.
    """

    ramachandran: dict
    rotamers: dict
    clashes: dict
    qscore: dict | None = None
    seconds: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready dict (see the class docstring for the fields and units)."""
        out = {"ramachandran": self.ramachandran, "rotamers": self.rotamers,
               "clashes": self.clashes, "seconds": self.seconds, "methods": METHODS}
        if self.qscore is not None:
            out["qscore"] = self.qscore
        return out

    def table(self) -> str:
        """A short plain-text table of the headline numbers."""
        r, ro, c = self.ramachandran, self.rotamers, self.clashes
        rows = [("Ramachandran favoured", f"{r['favored_pct']:.2f} %", f"{r['favored']}/{r['n']}"),
                ("Ramachandran outliers", f"{r['outlier_pct']:.2f} %", f"{r['outlier']}/{r['n']}"),
                ("Rotamer outliers", f"{ro['outlier_pct']:.2f} %", f"{ro['outlier']}/{ro['n']}"),
                ("Clashscore (H added)", f"{c['clashscore']:.2f}",
                 f"{c['clashes']} clashes / {c['n_atoms']} atoms")]
        if self.qscore is not None:
            rows.append(("Q-score (mean)", f"{self.qscore['q_mean']:.3f}",
                         f"σ = {self.qscore['sigma']} Å, {self.qscore['n_atoms']} atoms"))
        w = max(len(a) for a, _, _ in rows)
        return "\n".join(f"{a:<{w}}  {b:>9}  {c}" for a, b, c in rows)


METHODS = {
    "ramachandran": "MolProbity Top8000 contours, 6 classes, favoured ≥ 2 %, outlier < 0.05 % "
                    "(general) / 0.1 % / 0.2 % (cis-Pro)",
    "rotamers": "Top8000 rotamer library as a Gaussian mixture (σ × 1.4); outlier below the "
                "1st percentile of its density",
    "clashes": "riding H by gemmi + CCP4 monomer library (electron-cloud X–H), Probe radii, "
               "overlap ≥ 0.4 Å, ≤ 3 bonds (4 with H) and H-bonds excluded",
    "qscore": "Pintilie et al. 2020, σ = 0.6 Å, shells 0.1–2.0 Å, 8 points",
}


def validate(model, emap=None, resolution=None, *, monlib=None,
             qscore_sigma: float = qscore.SIGMA, residues: bool = True) -> ValidationReport:
    """Validation numbers of ``model`` (and of its fit to ``emap``).

    Parameters
    ----------
    model : densrefine.Model
    emap : densrefine.Grid, optional
        Map for the Q-score.
    resolution : float, optional
        Å; recorded only (the Q-score's σ does not depend on it).
    monlib : str, optional
        Monomer library for placing hydrogens (default: `densrefine.restraints.monlib`).
    qscore_sigma : float
        Å, width of the Q-score reference Gaussian.
    residues : bool
        Keep the per-residue Q list in the report.

    Returns
    -------
    ValidationReport

    Raises
    ------
    InputError
        The model has no atoms.

    Examples
    --------
    >>> from densrefine.build import ideal_peptide
    >>> rep = validate(ideal_peptide("AVLSKAEFAA"))     # ideal α-helix
    >>> d = rep.to_dict()
    >>> d["ramachandran"]["outlier"], d["clashes"]["clashscore"]
    (0, 0.0)
    """
    if len(model.atoms) == 0:
        raise input_error(getattr(model, "path", None), "the model has no atoms",
                          "give a model with coordinates")
    sec, det = {}, {}
    t = time.perf_counter()
    det["ramachandran"] = ramachandran.evaluate(model)
    rama = det["ramachandran"].summary()
    sec["ramachandran"] = round(time.perf_counter() - t, 3)
    log.info("Ramachandran (MolProbity Top8000 contours): %d residues, %.2f %% favoured, "
             "%.2f %% outliers", rama["n"], rama["favored_pct"], rama["outlier_pct"])
    t = time.perf_counter()
    det["rotamers"] = rotamers.evaluate(model)
    rota = det["rotamers"].summary()
    sec["rotamers"] = round(time.perf_counter() - t, 3)
    log.info("Rotamers (Top8000 library mixture, outlier < %.0f %%): %d side chains, %.2f %% "
             "outliers", rotamers.OUTLIER_PCT, rota["n"], rota["outlier_pct"])
    t = time.perf_counter()
    det["clashes"] = clashes.clashscore(model, monlib)
    clash = det["clashes"].summary()
    sec["clashes"] = round(time.perf_counter() - t, 3)
    q = None
    if emap is not None:
        t = time.perf_counter()
        det["qscore"] = qscore.qscore(model, emap, sigma=qscore_sigma)
        q = det["qscore"].summary()
        if resolution is not None:
            q["resolution"] = float(resolution)
        if residues:
            q["residues"] = [[c, s, i, rn, round(float(v), 4)] for (c, s, i, rn), v
                             in zip(det["qscore"].residues, det["qscore"].q_residue)]
        sec["qscore"] = round(time.perf_counter() - t, 3)
    return ValidationReport(rama, rota, clash, q, sec, det)
