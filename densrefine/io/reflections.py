"""Reflection data (MTZ / mmCIF structure factors) → `Reflections`.

gemmi reads the files (``read_mtz_file``; ``cif.read`` + ``as_refln_blocks`` for the
deposited ``r*sf.ent`` format, gzipped or not); this module chooses the columns, cleans
the data and decides whether the free-R flags can be used.

Rules
-----
* Observations, in order of preference: amplitudes (MTZ type F followed by its type-Q
  sigma: FOBS, FP, ...; mmCIF ``F_meas_au``), then intensities (type J: IOBS, I;
  mmCIF ``intensity_meas``) converted with French–Wilson (`french_wilson`), then
  anomalous pairs F(+)/F(−) (types G/L) or I(+)/I(−) (types K/M), merged as the
  1/σ²-weighted mean (a reflection with one mate keeps it). ``labin`` overrides.
* Missing observations (NaN) are dropped silently; σ ≤ 0 or NaN, negative F,
  hkl = 000, systematic absences, duplicates after reduction to the ASU, mmCIF
  status ``-``/``x`` and French–Wilson outliers are dropped with a warning and counted
  in ``info["rejected"]``.
* Indices are reduced to gemmi's reciprocal ASU (``ReciprocalAsu.to_asu``).
* Free-R flags (``FreeR_flag``, ``FREE``, ``R-free-flags``, ...; mmCIF ``status`` 'f'
  or ``pdbx_r_free_flag``): values 0..N with N ≥ 2 in near-equal shares → test = 0
  (CCP4); only {0, 1} →
  test = the minority value (phenix: test = 1); {−1, 1} → test = −1 (SHELX).
  Flags that are not integers, a single value, or a test fraction outside 0.5–25 %
  make ``free = None`` with ``info["free_problem"]`` saying why. Fewer than 20 test
  reflections only warn (tiny cells such as 5E5Z have 18 and are usable).
"""
from __future__ import annotations

import dataclasses
import gzip
import logging
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import DensrefineWarning, InputError, check_readable, format_error, input_error

log = logging.getLogger("densrefine")

_FREE_NAMES = ("freer_flag", "free", "r-free-flags", "freerflag", "freer", "rfree",
               "free_flag", "r_free_flag", "pdbx_r_free_flag")
_PREFERRED = ("FOBS", "FP", "F", "FMEAS", "F-OBS", "F_MEAS_AU", "F_MEAS", "IOBS", "I",
              "IMEAN", "I-OBS", "INTENSITY_MEAS")
_CALC_LIKE = re.compile(r"^(FC|FWT|DELFWT|2FOFCWT|FOFCWT|FMODEL|F-MODEL|FCALC|F_CALC|FB$|"
                        r"PDBX_FWT|PDBX_DELFWT|FOM)", re.IGNORECASE)
# mmCIF _refln tags → MTZ column types, and their sigma tags
_CIF_TYPES = {"F_meas_au": "F", "F_meas": "F", "intensity_meas": "J",
              "pdbx_F_plus": "G", "pdbx_F_minus": "G", "pdbx_I_plus": "K",
              "pdbx_I_minus": "K", "pdbx_r_free_flag": "I", "pdbx_FWT": "F",
              "pdbx_PHWT": "P", "pdbx_DELFWT": "F", "pdbx_DELPHWT": "P",
              "F_calc": "F", "F_calc_au": "F", "phase_calc": "P"}
_CIF_SIGMA = {"F_meas_au": "F_meas_sigma_au", "F_meas": "F_meas_sigma",
              "intensity_meas": "intensity_sigma", "pdbx_F_plus": "pdbx_F_plus_sigma",
              "pdbx_F_minus": "pdbx_F_minus_sigma", "pdbx_I_plus": "pdbx_I_plus_sigma",
              "pdbx_I_minus": "pdbx_I_minus_sigma"}
_SIGMA_TYPE = {"F": "Q", "J": "Q", "G": "L", "K": "M"}
_MAP_PAIRS = {"2fofc": (("FWT", "PHWT"), ("2FOFCWT", "PH2FOFCWT"), ("pdbx_FWT", "pdbx_PHWT")),
              "fofc": (("DELFWT", "PHDELWT"), ("FOFCWT", "PHFOFCWT"),
                       ("pdbx_DELFWT", "pdbx_DELPHWT"))}


@dataclass(frozen=True, eq=False)
class Reflections:
    """Merged reflection data of one crystal, reduced to the reciprocal ASU.

    Attributes
    ----------
    path : str
        File the data were read from.
    hkl : ndarray, shape (n, 3), int32
        Unique Miller indices in gemmi's reciprocal ASU.
    f, sigf : ndarray, shape (n,), float64
        Amplitudes and their standard deviations (French–Wilson when read from I).
    free : ndarray, shape (n,), bool, or None
        True for the test (free) set; None when there is no usable free set.
    cell : gemmi.UnitCell
        Unit cell (Å, degrees).
    spacegroup : gemmi.SpaceGroup
        Space group.
    d : ndarray, shape (n,), float64
        Resolution of each reflection, Å.
    i, sigi : ndarray, shape (n,), float64, or None
        Merged intensities and their σ: the observations when the amplitudes came from
        them (French–Wilson), or an intensity column beside the amplitudes (MTZ type J,
        e.g. IOBS next to FOBS; NaN where missing). Twinning statistics
        (`densrefine.xtal.twin`) use them; None when the file has none.
    info : dict
        What was read: ``file_type``, ``columns`` (role → label), ``source``,
        ``free_flag_column``, ``convention``, ``n_free``, ``n_work``, ``free_problem``,
        ``d_min``, ``d_max``, ``n``, ``n_rejected`` and ``rejected`` (reason → count).
    """

    path: str
    hkl: np.ndarray
    f: np.ndarray
    sigf: np.ndarray
    free: np.ndarray | None
    cell: object
    spacegroup: object
    d: np.ndarray
    info: dict
    i: np.ndarray | None = None
    sigi: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.f)

    def d_min(self) -> float:
        """Highest resolution (smallest d) of the data, Å."""
        return float(self.d.min())

    def select(self, mask) -> "Reflections":
        """Subset by a boolean mask (n,) or an index array; counts in ``info`` follow."""
        idx = np.asarray(mask)
        free = None if self.free is None else self.free[idx]
        d = self.d[idx]
        info = dict(self.info)
        info.update(n=len(d), n_free=0 if free is None else int(free.sum()),
                    d_min=float(d.min()) if len(d) else None,
                    d_max=float(d.max()) if len(d) else None)
        info["n_work"] = len(d) - info["n_free"]
        sub = (lambda a: None if a is None else a[idx])  # noqa: E731
        return dataclasses.replace(self, hkl=self.hkl[idx], f=self.f[idx],
                                   sigf=self.sigf[idx], free=free, d=d, info=info,
                                   i=sub(self.i), sigi=sub(self.sigi))


@dataclass
class _Table:
    """A reflection file as columns: labels in file order with MTZ-style types."""

    path: str
    file_type: str
    hkl: np.ndarray
    cell: object
    spacegroup: object
    types: dict             # label → one-letter type ("S" for strings)
    getter: object          # label → ndarray (float64, or str for "S")
    sigma_of: dict          # label → sigma label

    def col(self, label):
        return self.getter(label)


_format_error = format_error


def _sniff(path) -> str:
    path = check_readable(path, "a reflection file", "give an MTZ or mmCIF reflection file")
    opener = gzip.open if path.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4096)
    except (OSError, EOFError) as exc:
        raise _format_error(path, f"cannot be read ({exc})", "check that the file is intact")
    if head[:4] == b"MTZ ":
        return "mtz"
    if b"\0" not in head and (b"data_" in head or b"_refln" in head):
        return "mmcif"
    raise _format_error(path, "is neither an MTZ nor an mmCIF reflection file",
                        "give an .mtz or a structure-factor mmCIF (r*sf.ent, .cif)")


def _mtz_table(path) -> _Table:
    import gemmi
    try:
        mtz = gemmi.read_mtz_file(path)
    except (RuntimeError, ValueError, OSError) as exc:
        raise _format_error(path, f"unreadable MTZ ({exc})", "check that the file is intact")
    if len(mtz.batches) > 0:
        raise input_error(path, "holds unmerged data (MTZ batches)",
                          "merge it first (e.g. aimless) and give the merged MTZ")
    if mtz.spacegroup is None:
        raise _format_error(path, "has no space group", "set it with gemmi/CCP4 tools")
    data = np.asarray(mtz.array, dtype=np.float64)
    labels = mtz.column_labels()
    types = {c.label: c.type for c in mtz.columns}
    sigma_of = {}
    for a, b in zip(mtz.columns, list(mtz.columns)[1:]):
        if _SIGMA_TYPE.get(a.type) == b.type:
            sigma_of[a.label] = b.label
    index = {lab: i for i, lab in enumerate(labels)}
    return _Table(path, "mtz", np.asarray(mtz.make_miller_array(), dtype=np.int32),
                  mtz.cell, mtz.spacegroup, types, lambda lab: data[:, index[lab]], sigma_of)


def _cif_table(path) -> _Table:
    import gemmi
    try:
        blocks = gemmi.as_refln_blocks(gemmi.cif.read(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise _format_error(path, f"unreadable mmCIF ({exc})", "check that the file is intact")
    merged = [b for b in blocks if b.default_loop is not None and b.is_merged()]
    usable = [b for b in merged if set(b.column_labels()) & set(_CIF_SIGMA)]
    if not usable:
        if merged:
            what = (f"no amplitudes or intensities with sigmas (_refln columns: "
                    f"{', '.join(merged[0].column_labels())})")
        elif any(b.default_loop is not None for b in blocks):
            what = "unmerged data only"
        else:
            what = "no _refln loop (a model file?)"
        raise input_error(path, f"has {what}", "give merged structure factors (r*sf.ent)")
    rb = usable[0]
    if rb.spacegroup is None:
        raise _format_error(path, "has no space group (_symmetry.space_group_name_H-M)",
                            "add it to the file")
    prefix = rb.default_loop.tags[0].split(".")[0] + "."
    labels = rb.column_labels()
    types = {lab: _CIF_TYPES.get(lab, "?") for lab in labels}
    if "status" in labels:
        types["status"] = "S"
    sigma_of = {k: v for k, v in _CIF_SIGMA.items() if k in labels and v in labels}

    def getter(lab):
        if types[lab] == "S":
            return np.array([gemmi.cif.as_string(v)
                             for v in rb.block.find_values(prefix + lab)])
        return np.asarray(rb.make_float_array(lab), dtype=np.float64)
    return _Table(path, "mmcif", np.asarray(rb.make_miller_array(), dtype=np.int32),
                  rb.cell, rb.spacegroup, types, getter, sigma_of)


def _open_table(path) -> _Table:
    kind = _sniff(path)
    return _mtz_table(os.fspath(path)) if kind == "mtz" else _cif_table(os.fspath(path))


def _columns_listing(table) -> str:
    return ", ".join(f"{lab}({t})" for lab, t in table.types.items()
                     if lab not in ("H", "K", "L", "index_h", "index_k", "index_l"))


def _rank(label):
    up = label.upper()
    return _PREFERRED.index(up) if up in _PREFERRED else len(_PREFERRED)


def _has_values(table, lab) -> bool:
    v = table.col(lab)
    return v.dtype.kind != "f" or bool(np.isfinite(v).any())


def _auto_columns(table) -> dict:
    """Choose observation columns: amplitudes > intensities > anomalous F > anomalous I.

    Columns without a single value (all NaN) are passed over, and that choice is logged
    (an MTZ whose FP column is empty but IMEAN is not gives French–Wilson amplitudes).
    """
    def with_sigma(typ):
        labs = [lab for lab, t in table.types.items() if t == typ and lab in table.sigma_of
                and not _CALC_LIKE.match(lab)]
        empty = [lab for lab in labs if not _has_values(table, lab)]
        if empty:
            log.warning("%s: column(s) %s hold no values (all missing): not used",
                        table.path, ", ".join(empty))
        return sorted((lab for lab in labs if lab not in empty), key=_rank)
    for typ, role in (("F", "F"), ("J", "I")):
        labs = with_sigma(typ)
        if labs:
            return {role: labs[0], "SIG" + role: table.sigma_of[labs[0]]}
    for typ, role in (("G", "F"), ("K", "I")):
        labs = [lab for lab, t in table.types.items() if t == typ and lab in table.sigma_of
                and _has_values(table, lab)]
        if len(labs) >= 2:
            return {role + "(+)": labs[0], "SIG" + role + "(+)": table.sigma_of[labs[0]],
                    role + "(-)": labs[1], "SIG" + role + "(-)": table.sigma_of[labs[1]]}
    raise input_error(table.path, "has no amplitudes or intensities with sigmas "
                      f"(columns: {_columns_listing(table)})",
                      "give a file with F/SIGF or I/SIGI, or choose columns with --labin")


def _parse_labin(table, labin) -> dict:
    """Turn ``"FP,SIGFP[,FREE]"`` / ``{"F": .., "SIGF": .., "FREE": ..}`` into roles."""
    if isinstance(labin, dict):
        roles = {k.upper(): v for k, v in labin.items()}
    else:
        labs = [s.strip() for s in str(labin).split(",") if s.strip()]
        missing = [lab for lab in labs if lab not in table.types]
        if missing:
            raise input_error(table.path, f"labin column(s) {', '.join(missing)} not found "
                              f"(columns: {_columns_listing(table)})", "fix --labin")
        kind = "I" if table.types[labs[0]] in ("J", "K") or "intensity" in labs[0] else "F"
        if len(labs) in (4, 5):
            names = [kind + "(+)", "SIG" + kind + "(+)", kind + "(-)", "SIG" + kind + "(-)"]
        elif len(labs) in (2, 3):
            names = [kind, "SIG" + kind]
        else:
            raise input_error(table.path, f"labin {labin!r} needs 2-5 labels",
                              "use e.g. FP,SIGFP[,FREE] or I,SIGI[,FREE]")
        roles = dict(zip(names + ["FREE"], labs))
    missing = [v for v in roles.values() if v not in table.types]
    if missing:
        raise input_error(table.path, f"labin column(s) {', '.join(missing)} not found "
                          f"(columns: {_columns_listing(table)})", "fix --labin")
    obs = set(roles) - {"FREE"}
    valid = [{k, "SIG" + k} for k in ("F", "I")] + [
        {k + s_ for s_ in ("(+)", "(-)")} | {"SIG" + k + s_ for s_ in ("(+)", "(-)")}
        for k in ("F", "I")]
    if obs not in valid:
        raise input_error(table.path, f"labin roles {sorted(roles)} are incomplete",
                          "give F+SIGF, I+SIGI or F(+),SIGF(+),F(-),SIGF(-) (and FREE)")
    return roles


def _merge_anomalous(table, roles, kind):
    """1/σ²-weighted mean of the (+) and (−) observations; one mate alone is kept."""
    vals, sigs = [], []
    for sign in ("(+)", "(-)"):
        v, s = table.col(roles[kind + sign]), table.col(roles["SIG" + kind + sign])
        good = np.isfinite(v) & np.isfinite(s) & (s > 0)
        vals.append(np.where(good, v, 0.0))
        sigs.append(np.where(good, s, np.inf))
    w = [1.0 / s**2 for s in sigs]
    wsum = w[0] + w[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (w[0] * vals[0] + w[1] * vals[1]) / wsum
        sig = 1.0 / np.sqrt(wsum)
    mean[wsum == 0] = np.nan
    return mean, sig


def _observations(table, roles):
    """Values and sigmas per row, the kind ("F"/"I") and the source description."""
    kind = "I" if ("I" in roles or "I(+)" in roles) else "F"
    if kind in roles:
        v, s = table.col(roles[kind]), table.col(roles["SIG" + kind])
        source = "amplitudes" if kind == "F" else "intensities (French-Wilson)"
    else:
        v, s = _merge_anomalous(table, roles, kind)
        source = "anomalous pairs merged" + ("" if kind == "F" else ", French-Wilson")
    return np.array(v, dtype=np.float64), np.array(s, dtype=np.float64), kind, source


def _find_free_column(table):
    if "status" in table.types:
        return "status"
    for lab, typ in table.types.items():
        low = lab.lower()
        if typ == "I" and (low in _FREE_NAMES or "free" in low):
            return lab
    return None


def _flag_convention(vals, free_flag):
    """Test value and convention name for integer flags; (None, problem) when unusable."""
    uniq, counts = np.unique(vals, return_counts=True)
    if free_flag is not None:
        return float(free_flag), f"user: test = {free_flag:g}"
    if len(uniq) == 1:
        return None, f"every reflection has flag {uniq[0]:g}"
    if set(uniq) <= {0.0, 1.0}:
        test = 1.0 if counts[1] <= counts[0] else 0.0
        return test, ("phenix: test = 1" if test == 1 else "ccp4: test = 0 (0/1 flags, minority)")
    if set(uniq) == {-1.0, 1.0}:
        return -1.0, "shelx: test = -1"
    if _ccp4_partition(uniq, counts):
        return 0.0, f"ccp4: test = 0 (flags 0..{uniq.max():g})"
    shown = ", ".join(f"{u:g}: {c}" for u, c in list(zip(uniq, counts))[:6])
    return None, (f"{len(uniq)} flag values ({shown}{', ...' if len(uniq) > 6 else ''}) "
                  "follow no known convention (CCP4 0..N in near-equal parts, phenix 0/1, "
                  "SHELX -1/1); give the test-set value with --free-flag")


def _from_bit_patterns(raw):
    """Flags written as int32 bit patterns into a float32 column (values ~1e-44).

    Returns (flags as float64, note) when the re-read integers form a known convention
    (CCP4 partition or 0/1), else (None, note saying what they are).
    """
    if np.mean(np.abs(raw[np.isfinite(raw)]) < 1e-30) < 0.99:
        return None, ""
    ints = np.asarray(raw, np.float32).view(np.int32).astype(np.float64)
    uniq, counts = np.unique(ints, return_counts=True)
    if _ccp4_partition(uniq, counts) or set(uniq) <= {0.0, 1.0}:
        return ints, f"values {uniq.min():g}..{uniq.max():g}"
    return None, (f" re-read as int32 they are {len(uniq)} values {uniq.min():g}.."
                  f"{uniq.max():g} in unequal shares ({int(counts[0])} of value "
                  f"{uniq[0]:g}), no free-set partition: not recoverable")


def _ccp4_partition(uniq, counts) -> bool:
    """CCP4 flags (uniqueify/freerflag): the values 0..N, each a near-equal share.

    Allows shares within a factor 3 of the median (random assignment of a few thousand
    reflections); 5A3H's column re-read as integers (0..38 with counts 16..1580 plus
    three values > 5000) is no partition and fails here.
    """
    if uniq.min() != 0 or len(uniq) < 3 or uniq.max() != len(uniq) - 1:
        return False
    med = np.median(counts)
    return bool(counts.max() <= 3 * med and counts.min() >= med / 3)


def _free_set(table, label, rows, free_flag):
    """Free mask for the kept rows, and the info entries describing it."""
    info = {"free_flag_column": label, "convention": None, "free_problem": None}
    n = len(rows)
    if label is None:
        info["free_problem"] = "no free-R flag column"
        return None, info
    raw = table.col(label)[rows]
    if table.types[label] == "S":
        if not np.any(raw == "f"):
            kinds = "/".join(sorted(set(raw.tolist())))
            info["free_problem"] = ("no reflection has status 'f'; "
                                    f"all reflections marked work ('{kinds}')")
            return None, info
        info["convention"] = "mmcif status: test = 'f'"
        return raw == "f", info
    finite = np.isfinite(raw)
    vals = raw[finite]
    bad = vals[vals != np.round(vals)]
    if bad.size:
        raw, why = _from_bit_patterns(raw)
        if raw is None:
            info["free_problem"] = (f"free-R flags in {label} are not integers (e.g. "
                                    f"{bad[0]:.3g}; integer bit patterns stored in a float "
                                    f"column?{why})")
            return None, info
        log.warning("%s: free-R flags in %s are integers stored as float bit patterns; "
                    "re-read as int32 (%s)", table.path, label, why)
        finite = np.isfinite(raw)
        vals = raw[finite]
    test, conv = _flag_convention(vals, free_flag)
    if test is None:
        info["free_problem"] = f"free-R flags in {label}: {conv}"
        return None, info
    info["convention"] = conv
    free = finite & (raw == test)
    frac = free.sum() / max(n, 1)
    if not 0.005 <= frac <= 0.25:
        info["free_problem"] = (f"free-R flags in {label}: test set ({conv}) is {100 * frac:.1f} % "
                                f"of {n} reflections, outside 0.5-25 %")
        return None, info
    if (~finite).any():
        warnings.warn(f"{table.path}: {int((~finite).sum())} reflections have no free-R flag "
                      f"in {label}; they are used as work reflections", DensrefineWarning,
                      stacklevel=3)
    if free.sum() < 20:
        warnings.warn(f"{table.path}: only {int(free.sum())} free reflections; R-free will be "
                      "noisy", DensrefineWarning, stacklevel=3)
    return free, info


def _companion_intensities(table, rows):
    """Intensities (type J with a sigma) stored beside the chosen amplitudes, at ``rows``."""
    labs = sorted((lab for lab, t in table.types.items()
                   if t == "J" and lab in table.sigma_of and not _CALC_LIKE.match(lab)),
                  key=_rank)
    if not labs:
        return None, None
    i, s = table.col(labs[0])[rows], table.col(table.sigma_of[labs[0]])[rows]
    if not np.isfinite(i).any():
        return None, None
    log.debug("Intensities %s kept beside the amplitudes (twinning statistics)", labs[0])
    return np.asarray(i, np.float64), np.asarray(s, np.float64)


def resolution(cell, hkl) -> np.ndarray:
    """Resolution d = 1/|h·B| of Miller indices, Å (float64; B = gemmi ``cell.frac.mat``).

    Parameters
    ----------
    cell : gemmi.UnitCell
        Unit cell (Å, degrees).
    hkl : ndarray, shape (n, 3), int
        Miller indices (none may be 000).

    Returns
    -------
    ndarray, shape (n,), float64
    """
    s = np.asarray(hkl, dtype=np.float64) @ np.array(cell.frac.mat, dtype=np.float64)
    return 1.0 / np.linalg.norm(s, axis=1)


def _reject(keep, bad, reason, rejected):
    n = int((keep & bad).sum())
    if n:
        rejected[reason] = rejected.get(reason, 0) + n
    return keep & ~bad


def _to_asu(hkl, spacegroup):
    import gemmi
    asu = gemmi.ReciprocalAsu(spacegroup)
    ops = spacegroup.operations()
    out = [asu.to_asu(h, ops)[0] for h in hkl.tolist()]
    return np.asarray(out, dtype=np.int32).reshape(-1, 3)


def _clean(table, v, s, kind, labels=()):
    """Rows to keep (before ASU merging) and the rejection counts."""
    rejected = {}
    keep = np.isfinite(v)
    if not keep.any():
        raise input_error(table.path, f"the chosen observation column(s) "
                          f"{', '.join(labels)} hold no values (all missing/NaN)",
                          f"choose other columns with --labin (columns: {_columns_listing(table)})")
    keep = _reject(keep, ~np.isfinite(s) | (s <= 0), "sigma <= 0 or NaN", rejected)
    if not keep.any():
        raise input_error(table.path, "every reflection has sigma <= 0 or NaN",
                          "give data with valid sigmas")
    if kind == "F":
        keep = _reject(keep, v < 0, "negative amplitude", rejected)
    if table.types.get("status") == "S":
        status = table.col("status")
        keep = _reject(keep, np.isin(status, ["-", "x"]), "status '-' or 'x'", rejected)
    ops = table.spacegroup.operations()
    absent = np.asarray(ops.systematic_absences(table.hkl), dtype=bool)
    keep = _reject(keep, absent | ~table.hkl.any(axis=1), "systematic absence or 000", rejected)
    return keep, rejected


def _check_range(path, d, d_min, d_max):
    lo, hi = float(d.min()), float(d.max())
    rng = f"the data cover {hi:.2f}-{lo:.2f} A"
    if d_min is not None and (d_min < lo * 0.995 or d_min >= hi):
        raise input_error(path, f"d_min {d_min:g} A is outside the data ({rng})",
                          f"give d_min between {lo:.2f} and {hi:.2f} A")
    if d_max is not None and d_max <= lo:
        raise input_error(path, f"d_max {d_max:g} A is outside the data ({rng})",
                          f"give d_max above {lo:.2f} A")
    if d_min is not None and d_max is not None and d_min >= d_max:
        raise input_error(path, f"d_min {d_min:g} A >= d_max {d_max:g} A",
                          "give d_min < d_max")
    sel = np.ones(len(d), dtype=bool)
    if d_min is not None:
        sel &= d >= d_min
    if d_max is not None:
        sel &= d <= d_max
    if not sel.any():
        raise input_error(path, f"no reflection between d_max {d_max} and d_min {d_min} A "
                          f"({rng})", "widen the resolution range")
    return sel


def read_reflections(path, *, labin=None, d_min=None, d_max=None, free_flag=None) -> Reflections:
    """Read merged reflection data from an MTZ or an mmCIF structure-factor file.

    Parameters
    ----------
    path : str or os.PathLike
        MTZ (optionally .gz) or mmCIF structure factors (``r*sf.ent``, optionally .gz).
    labin : str or dict, optional
        Column override: ``"FP,SIGFP[,FREE]"``, ``"I,SIGI[,FREE]"``,
        ``"F(+),SIGF(+),F(-),SIGF(-)[,FREE]"`` or a dict with keys F/SIGF or I/SIGI
        (or F(+)... ) and optionally FREE. Without FREE the flag column is detected.
    d_min, d_max : float, optional
        Resolution limits, Å. An error is raised when they lie outside the data
        (a d_max above the data's lowest resolution is harmless).
    free_flag : int, optional
        Flag value marking the test set, overriding the detected convention.

    Returns
    -------
    Reflections
        Unique reflections in the ASU with amplitudes, sigmas, free mask and ``info``.

    Raises
    ------
    InputError
        Missing/unreadable file, no usable columns, bad ``labin``, all sigmas bad,
        resolution limits outside the data, nothing left after filtering.
    """
    table = _open_table(path)
    roles = _parse_labin(table, labin) if labin else _auto_columns(table)
    free_label = roles.pop("FREE", None) or _find_free_column(table)
    v, s, kind, source = _observations(table, roles)
    keep, rejected = _clean(table, v, s, kind, list(roles.values()))
    rows = np.nonzero(keep)[0]
    hkl = _to_asu(table.hkl[rows], table.spacegroup)
    _, first = np.unique(hkl, axis=0, return_index=True)
    if len(first) < len(rows):
        rejected["duplicate after ASU reduction"] = len(rows) - len(first)
        first = np.sort(first)
        rows, hkl = rows[first], hkl[first]
    f, sigf = v[rows], s[rows]
    i_obs = sig_i = None
    if kind == "I":
        from .french_wilson import amplitudes_from_intensities  # scipy only when needed
        i_obs, sig_i = f, sigf
        f, sigf, ok = amplitudes_from_intensities(f, sigf, hkl, table.cell, table.spacegroup)
        if (~ok).any():
            rejected["French-Wilson outlier (x < -4)"] = int((~ok).sum())
            rows, hkl, f, sigf = rows[ok], hkl[ok], f[ok], sigf[ok]
            i_obs, sig_i = i_obs[ok], sig_i[ok]
    if kind == "F":
        i_obs, sig_i = _companion_intensities(table, rows)
    d = resolution(table.cell, hkl)
    sel = _check_range(table.path, d, d_min, d_max)
    rows, hkl, f, sigf, d = rows[sel], hkl[sel], f[sel], sigf[sel], d[sel]
    if i_obs is not None:
        i_obs, sig_i = i_obs[sel].astype(np.float64), sig_i[sel].astype(np.float64)
    free, finfo = _free_set(table, free_label, rows, free_flag)
    n_rej = sum(rejected.values())
    if n_rej:
        warnings.warn(f"{table.path}: dropped {n_rej} reflections ("
                      + ", ".join(f"{k}: {c}" for k, c in rejected.items()) + ")",
                      DensrefineWarning, stacklevel=2)
    if finfo["free_problem"]:
        warnings.warn(f"{table.path}: no usable free set ({finfo['free_problem']}); "
                      "R-free is unavailable", DensrefineWarning, stacklevel=2)
    n_free = 0 if free is None else int(free.sum())
    columns = dict(roles)
    if free_label is not None:
        columns["FREE"] = free_label
    info = {"file_type": table.file_type, "columns": columns, "source": source, **finfo,
            "n": len(f), "n_free": n_free, "n_work": len(f) - n_free,
            "d_min": float(d.min()), "d_max": float(d.max()),
            "n_rejected": n_rej, "rejected": rejected}
    log.info("Read %d reflections from %s (%s, %s: %s; %.2f-%.2f A; free set: %s)",
             len(f), table.path, table.file_type, source,
             ",".join(roles.values()), info["d_max"], info["d_min"],
             f"{free_label} {finfo['convention']}, {n_free} test" if free is not None
             else f"none - {finfo['free_problem']}")
    return Reflections(table.path, hkl, f.astype(np.float64), sigf.astype(np.float64), free,
                       table.cell, table.spacegroup, d, info, i_obs, sig_i)


def read_map_coefficients(path, kind="2fofc", *, labin=None):
    """Read map coefficients (amplitude + phase in degrees) from an MTZ or mmCIF file.

    Parameters
    ----------
    path : str or os.PathLike
        MTZ with FWT/PHWT, 2FOFCWT/PH2FOFCWT (kind "2fofc") or DELFWT/PHDELWT,
        FOFCWT/PHFOFCWT (kind "fofc"); mmCIF with pdbx_FWT/pdbx_PHWT or
        pdbx_DELFWT/pdbx_DELPHWT.
    kind : {"2fofc", "fofc"}
        Which map.
    labin : str, optional
        ``"AMPLITUDE,PHASE"`` column labels, overriding the search.

    Returns
    -------
    hkl : ndarray, shape (n, 3), int32
        Miller indices as stored in the file (rows with missing values dropped).
    coef : ndarray, shape (n,), complex128
        F·exp(iφ).
    cell : gemmi.UnitCell
    spacegroup : gemmi.SpaceGroup
    """
    if kind not in _MAP_PAIRS:
        raise input_error(path, f"unknown map kind {kind!r}", "use '2fofc' or 'fofc'")
    table = _open_table(path)
    if labin:
        pair = tuple(s.strip() for s in str(labin).split(","))
        missing = [lab for lab in pair if lab not in table.types]
        if len(pair) != 2 or missing:
            raise input_error(path, f"labin {labin!r} is not two existing columns "
                              f"(columns: {_columns_listing(table)})", "give AMPLITUDE,PHASE")
    else:
        pairs = [p for p in _MAP_PAIRS[kind] if p[0] in table.types and p[1] in table.types]
        if not pairs:
            wanted = " or ".join("/".join(p) for p in _MAP_PAIRS[kind])
            raise input_error(path, f"has no {kind} map coefficients ({wanted}; columns: "
                              f"{_columns_listing(table)})",
                              "give an MTZ from refinement (REFMAC, phenix, servalcat)")
        pair = pairs[0]
    amp, phase = table.col(pair[0]), table.col(pair[1])
    ok = np.isfinite(amp) & np.isfinite(phase)
    coef = amp[ok] * np.exp(1j * np.deg2rad(phase[ok]))
    log.info("Read %d %s map coefficients %s/%s from %s", int(ok.sum()), kind, *pair, path)
    return table.hkl[ok], coef.astype(np.complex128), table.cell, table.spacegroup


def _cell_parameters(cell):
    """Six cell parameters, or None for no cell or a dummy one (edges of 1 Å or less,
    as gemmi gives a model without CRYST1 and PDB writes for cryo-EM entries)."""
    if cell is None:
        return None
    if hasattr(cell, "parameters"):
        p = tuple(float(x) for x in cell.parameters)
    elif hasattr(cell, "alpha"):
        p = (cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma)
    else:
        p = tuple(float(x) for x in cell)
    return None if max(p[:3]) <= 1.0 else p


def check_model_compatible(refl, model_cell, model_sg_name, model_path) -> None:
    """Raise when a model's cell or space group disagrees with the reflection data.

    Parameters
    ----------
    refl : Reflections
        The data.
    model_cell : gemmi.UnitCell, densrefine.types.UnitCell, sequence of 6 floats, or None
        Model cell (Å, degrees). None, or a dummy cell with edges of 1 Å (no CRYST1,
        or a cryo-EM CRYST1), is accepted with a warning: the data's cell is used.
    model_sg_name : str or None
        Model space group (Hermann–Mauguin). Empty/None, or "P 1" together with no
        cell (what a file without CRYST1 reads as), is accepted with a warning.
    model_path : str
        Model file, named in the message.

    Raises
    ------
    InputError
        Cell lengths differ by > 1 % or angles by > 1°, or the space groups have
        different symmetry operations; the message gives both values.
    """
    import gemmi
    data = _cell_parameters(refl.cell)
    model = _cell_parameters(model_cell)
    fmt = lambda p: " ".join(f"{x:.2f}" for x in p)  # noqa: E731
    if model is None:
        warnings.warn(f"{model_path}: model has no unit cell (no CRYST1 / _cell); using the "
                      f"cell of {refl.path} ({fmt(data)})",
                      DensrefineWarning, stacklevel=2)
    elif (any(abs(m - d) > 0.01 * d for m, d in zip(model[:3], data[:3]))
          or any(abs(m - d) > 1.0 for m, d in zip(model[3:], data[3:]))):
        raise input_error(model_path, f"model cell ({fmt(model)}) differs from the cell of "
                          f"{refl.path} ({fmt(data)})",
                          "use the model refined against these data (or fix CRYST1)")
    if not model_sg_name or not model_sg_name.strip() or (
            model is None and model_sg_name.replace(" ", "").upper() == "P1"):
        warnings.warn(f"{model_path}: model has no space group; using the data's "
                      f"({refl.spacegroup.hm})", DensrefineWarning, stacklevel=2)
        return
    sg = gemmi.find_spacegroup_by_name(model_sg_name)
    same = sg is not None and (
        sorted(op.triplet() for op in sg.operations())
        == sorted(op.triplet() for op in refl.spacegroup.operations()))
    if not same:
        raise input_error(model_path, f"model space group {model_sg_name!r} differs from "
                          f"{refl.spacegroup.hm!r} of {refl.path}",
                          "use the model refined against these data (or fix CRYST1)")


def reflections_summary(path) -> dict:
    """What a reflection file holds (used by ``densrefine info``).

    Parameters
    ----------
    path : str or os.PathLike
        MTZ or mmCIF structure factors (optionally gzipped).

    Returns
    -------
    dict
        ``path``, ``file_type`` ("mtz" or "mmcif"), ``cell`` (6 numbers),
        ``space_group``, ``columns`` ({label: type}), ``n_reflections`` (rows),
        ``d_max``/``d_min`` (Å, over all rows), ``observations`` (the columns densrefine
        would use, role → label, or None with ``observations_problem``), ``n_obs``,
        ``free_flags`` (column, convention, ``n_free``, ``n_work``, or the problem).

    Raises
    ------
    InputError, FormatError
        Not a readable reflection file.
    """
    table = _open_table(path)
    cell = _cell_parameters(table.cell) or tuple(float(x) for x in table.cell.parameters)
    d = resolution(table.cell, table.hkl) if len(table.hkl) else np.zeros(0)
    d = d[np.isfinite(d)]
    out = {"path": os.fspath(path), "file_type": table.file_type,
           "cell": [round(x, 4) for x in cell], "space_group": table.spacegroup.hm,
           "columns": {lab: t for lab, t in table.types.items()},
           "n_reflections": int(len(table.hkl)),
           "d_max": round(float(d.max()), 3) if len(d) else None,
           "d_min": round(float(d.min()), 3) if len(d) else None,
           "observations": None, "n_obs": None, "free_flags": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            refl = read_reflections(path)
        except InputError as exc:
            out["observations_problem"] = str(exc)
            return out
    info = refl.info
    out["observations"] = dict(info.get("columns") or {})
    out["n_obs"] = int(len(refl))
    out["free_flags"] = {"column": info.get("free_flag_column"),
                         "convention": info.get("convention"),
                         "n_free": info.get("n_free"), "n_work": info.get("n_work"),
                         "problem": info.get("free_problem")}
    return out
