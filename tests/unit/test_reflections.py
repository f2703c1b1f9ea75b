"""Unit tests of densrefine.io.reflections / french_wilson on synthetic files and data."""
from __future__ import annotations

import warnings

import gemmi
import numpy as np
import pytest
from scipy.integrate import quad

from densrefine.errors import DensrefineWarning, FormatError, InputError
from densrefine.io import (check_model_compatible, read_map_coefficients,
                           read_reflections)
from densrefine.io.french_wilson import _moments, french_wilson
from densrefine.io.reflections import resolution
from densrefine.types import UnitCell

CELL = gemmi.UnitCell(30.0, 40.0, 50.0, 90, 90, 90)
SG = gemmi.SpaceGroup("P 21 21 21")


def miller(d_min=2.5):
    return gemmi.make_miller_array(CELL, SG, d_min, 0.0, True)


def write_mtz(path, columns, hkl=None, sg=SG, cell=CELL):
    """columns: list of (label, type, values); written after H K L."""
    hkl = miller() if hkl is None else np.asarray(hkl)
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = sg
    mtz.set_cell_for_all(cell)
    mtz.add_dataset("synthetic")
    for label, typ, _ in columns:
        mtz.add_column(label, typ)
    data = np.column_stack([hkl.astype(np.float32)]
                           + [np.asarray(v, dtype=np.float32) for _, _, v in columns])
    mtz.set_data(data)
    mtz.write_to_file(str(path))
    return str(path)


def amplitude_columns(rng, n, flags=None, flag_label="FreeR_flag"):
    f = rng.gamma(2.0, 50.0, n)
    cols = [("FP", "F", f), ("SIGFP", "Q", 0.05 * f + 1.0)]
    if flags is not None:
        cols.append((flag_label, "I", flags))
    return cols


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DensrefineWarning)
        return fn(*a, **k)


# ---------------------------------------------------------------- French-Wilson


@pytest.mark.parametrize("centric", [False, True])
def test_fw_moments_match_quadrature(centric):
    xs = np.array([-3.9, -1.0, 0.0, 2.0, 8.0, 30.0, 40.0])
    ef, sd = _moments(xs, np.full(len(xs), centric))
    for x, a, b in zip(xs, ef, sd):
        w = (lambda t: t**-0.5) if centric else (lambda t: 1.0)
        kw = dict(points=[max(x, 0.0)], limit=400)
        z = quad(lambda t: w(t) * np.exp(-(t - x) ** 2 / 2), 0, max(x, 0) + 40, **kw)[0]
        m1 = quad(lambda t: np.sqrt(t) * w(t) * np.exp(-(t - x) ** 2 / 2),
                  0, max(x, 0) + 40, **kw)[0] / z
        m2 = quad(lambda t: t * w(t) * np.exp(-(t - x) ** 2 / 2), 0, max(x, 0) + 40, **kw)[0] / z
        assert a == pytest.approx(m1, rel=1e-6)
        assert b == pytest.approx(np.sqrt(m2 - m1**2), rel=1e-3)


@pytest.mark.parametrize("centric", [False, True])
def test_fw_recovers_wilson_amplitudes(rng, centric):
    n, sigma_true, sig_i = 60_000, 100.0, 30.0
    if centric:   # J = Σ·χ²(1): F = |N(0, Σ)|
        j = sigma_true * rng.normal(size=n) ** 2
    else:         # J ~ Exp(Σ)
        j = rng.exponential(sigma_true, n)
    i_obs = j + rng.normal(0.0, sig_i, n)
    f, sf, ok = french_wilson(i_obs, np.full(n, sig_i), np.full(n, sigma_true),
                              np.full(n, centric))
    f_true = np.sqrt(j)
    assert ok.mean() > 0.99
    assert np.all(f[ok] > 0)
    # posterior mean is unbiased given I: in bins of I, <F_FW> = <F_true>
    order = np.argsort(i_obs[ok])
    for chunk in np.array_split(order, 6):
        assert f[ok][chunk].mean() == pytest.approx(f_true[ok][chunk].mean(), rel=0.02)
    # and it beats sqrt(max(I, 0)) in mean squared error
    naive = np.sqrt(np.clip(i_obs, 0, None))
    assert np.mean((f[ok] - f_true[ok]) ** 2) < np.mean((naive[ok] - f_true[ok]) ** 2)


def test_fw_strong_reflections_equal_sqrt_i():
    i_obs = np.array([1e4, 1e6, 5e8])
    f, sf, ok = french_wilson(i_obs, np.sqrt(i_obs), np.full(3, 1e5), np.array([0, 1, 0], bool))
    np.testing.assert_allclose(f, np.sqrt(i_obs), rtol=2e-3)
    np.testing.assert_allclose(sf, np.sqrt(i_obs) / (2 * np.sqrt(i_obs)), rtol=2e-2)
    assert ok.all()


def test_fw_rejects_very_negative():
    f, sf, ok = french_wilson(np.array([-100.0, -10.0]), np.array([10.0, 10.0]),
                              np.array([50.0, 50.0]), np.array([False, False]))
    assert ok.tolist() == [False, True]
    assert np.isnan(f[0]) and f[1] > 0


# ---------------------------------------------------------------- column choice, flags


def test_amplitudes_ccp4_flags(tmp_path, rng):
    n = len(miller())
    flags = rng.integers(0, 20, n)
    path = write_mtz(tmp_path / "a.mtz", amplitude_columns(rng, n, flags)
                     + [("IMEAN", "J", rng.random(n)), ("SIGIMEAN", "Q", np.ones(n))])
    r = read_reflections(path)
    assert r.info["columns"] == {"F": "FP", "SIGF": "SIGFP", "FREE": "FreeR_flag"}
    assert r.info["source"] == "amplitudes"
    assert r.info["convention"].startswith("ccp4: test = 0")
    assert r.info["n_free"] == int((flags == 0).sum()) == int(r.free.sum())
    assert r.hkl.dtype == np.int32 and r.f.dtype == np.float64 and len(r) == n
    np.testing.assert_allclose(r.d, resolution(CELL, r.hkl))
    assert r.d_min() == pytest.approx(r.d.min())


def test_phenix_flags_and_user_override(tmp_path, rng):
    n = len(miller())
    flags = (rng.random(n) < 0.05).astype(float)
    path = write_mtz(tmp_path / "p.mtz", amplitude_columns(rng, n, flags, "R-free-flags"))
    r = read_reflections(path)
    assert r.info["convention"] == "phenix: test = 1"
    assert r.info["n_free"] == int(flags.sum())
    r0 = quiet(read_reflections, path, free_flag=0)
    assert r0.free is None and "outside" in r0.info["free_problem"]   # 95 % "test"


@pytest.mark.parametrize("flags, problem", [
    (lambda n, rng: rng.random(n) * 0.9 + 0.05, "not integers"),
    (lambda n, rng: (rng.random(n) < 0.5).astype(float), "outside 0.5-25"),
    (lambda n, rng: np.zeros(n), "every reflection has flag 0"),
])
def test_broken_flags_give_no_free_set(tmp_path, rng, flags, problem):
    n = len(miller())
    path = write_mtz(tmp_path / "b.mtz", amplitude_columns(rng, n, flags(n, rng), "FREE"))
    with pytest.warns(DensrefineWarning, match="no usable free set"):
        r = read_reflections(path)
    assert r.free is None and problem in r.info["free_problem"]
    assert r.info["n_free"] == 0 and r.info["n_work"] == n


def test_no_free_column_warns(tmp_path, rng):
    path = write_mtz(tmp_path / "n.mtz", amplitude_columns(rng, len(miller())))
    with pytest.warns(DensrefineWarning, match="no free-R flag column"):
        r = read_reflections(path)
    assert r.free is None


def test_intensities_only_use_french_wilson(tmp_path, rng):
    hkl = miller()
    n = len(hkl)
    j = rng.exponential(1000.0, n)
    i_obs = j + rng.normal(0, 20.0, n)
    path = write_mtz(tmp_path / "i.mtz", [("I", "J", i_obs), ("SIGI", "Q", np.full(n, 20.0)),
                                          ("FreeR_flag", "I", rng.integers(0, 20, n))],
                     hkl=hkl)
    r = read_reflections(path)
    assert r.info["source"] == "intensities (French-Wilson)"
    assert r.info["columns"]["I"] == "I"
    assert np.all(r.f > 0) and np.corrcoef(r.f, np.sqrt(j))[0, 1] > 0.98


def test_anomalous_pairs_merged(tmp_path, rng):
    n = len(miller())
    fp, fm = rng.gamma(2, 50, n), rng.gamma(2, 50, n)
    sp, sm = np.full(n, 2.0), np.full(n, 1.0)
    fm[:5] = np.nan
    path = write_mtz(tmp_path / "an.mtz", [("F(+)", "G", fp), ("SIGF(+)", "L", sp),
                                           ("F(-)", "G", fm), ("SIGF(-)", "L", sm)])
    r = quiet(read_reflections, path)
    assert r.info["source"] == "anomalous pairs merged"
    order = {tuple(h): i for i, h in enumerate(miller())}
    idx = np.array([order[tuple(h)] for h in r.hkl])
    expect = np.where(np.isnan(fm), fp, (fp / 4 + fm) / 1.25)[idx]
    np.testing.assert_allclose(r.f, expect, rtol=1e-5)
    lone = np.isnan(fm)[idx]
    np.testing.assert_allclose(r.sigf[lone], 2.0)
    np.testing.assert_allclose(r.sigf[~lone], 1 / np.sqrt(1.25), rtol=1e-6)


def test_labin_override_and_errors(tmp_path, rng):
    n = len(miller())
    cols = amplitude_columns(rng, n, rng.integers(0, 20, n)) + [
        ("FP2", "F", rng.random(n) + 1), ("SIGFP2", "Q", np.ones(n))]
    path = write_mtz(tmp_path / "l.mtz", cols)
    r = read_reflections(path, labin="FP2,SIGFP2,FreeR_flag")
    assert r.info["columns"]["F"] == "FP2" and r.info["n_free"] > 0
    r = read_reflections(path, labin={"F": "FP2", "SIGF": "SIGFP2"})
    assert r.info["columns"]["FREE"] == "FreeR_flag"
    with pytest.raises(InputError, match="NOPE.*not found.*FP2"):
        read_reflections(path, labin="NOPE,SIGFP2")


def test_bad_sigmas_dropped_and_all_bad_is_error(tmp_path, rng):
    n = len(miller())
    cols = amplitude_columns(rng, n, rng.integers(0, 20, n))
    cols[1][2][:7] = 0.0
    cols[1][2][7:10] = -1.0
    path = write_mtz(tmp_path / "s.mtz", cols)
    with pytest.warns(DensrefineWarning, match="dropped 10"):
        r = read_reflections(path)
    assert len(r) == n - 10 and r.info["rejected"] == {"sigma <= 0 or NaN": 10}
    cols[1][2][:] = 0.0
    path = write_mtz(tmp_path / "s0.mtz", cols)
    with pytest.raises(InputError, match="every reflection has sigma"):
        read_reflections(path)


def test_no_observations_lists_columns(tmp_path, rng):
    n = len(miller())
    path = write_mtz(tmp_path / "c.mtz", [("FC", "F", rng.random(n)), ("PHIC", "P", rng.random(n))])
    with pytest.raises(InputError, match=r"no amplitudes or intensities.*FC\(F\), PHIC\(P\)"):
        read_reflections(path)


def test_asu_reduction_and_duplicates(tmp_path, rng):
    hkl = np.array([[1, 2, 3], [-1, 2, 3], [1, -2, -3], [2, 3, 4], [0, 0, 0], [1, 0, 0]])
    path = write_mtz(tmp_path / "d.mtz", [("FP", "F", [10, 11, 12, 13, 14, 15]),
                                          ("SIGFP", "Q", np.ones(6))], hkl=hkl)
    r = quiet(read_reflections, path)
    assert sorted(map(tuple, r.hkl.tolist())) == [(1, 2, 3), (2, 3, 4)]
    assert r.f.tolist() == [10.0, 13.0]   # first of the equivalents is kept
    assert r.info["rejected"] == {"systematic absence or 000": 2,
                                  "duplicate after ASU reduction": 2}


def test_resolution_limits(tmp_path, rng):
    path = write_mtz(tmp_path / "r.mtz", amplitude_columns(rng, len(miller()),
                                                           rng.integers(0, 20, len(miller()))))
    r = read_reflections(path, d_min=3.0, d_max=10.0)
    assert r.d.min() >= 3.0 and r.d.max() <= 10.0
    assert r.info["d_min"] == pytest.approx(r.d.min())
    for kw in ({"d_min": 2.0}, {"d_min": 60.0}, {"d_max": 1.0}, {"d_min": 5.0, "d_max": 4.0}):
        with pytest.raises(InputError, match="data cover|d_min"):
            read_reflections(path, **kw)


def test_select(tmp_path, rng):
    n = len(miller())
    path = write_mtz(tmp_path / "x.mtz", amplitude_columns(rng, n, rng.integers(0, 20, n)))
    r = read_reflections(path)
    sub = r.select(r.d > 4.0)
    assert len(sub) == int((r.d > 4.0).sum()) == sub.info["n"]
    assert sub.info["n_free"] == int(sub.free.sum())
    assert sub.info["n_work"] + sub.info["n_free"] == len(sub)


CIF = """data_rtestsf
_cell.length_a 30.0
_cell.length_b 40.0
_cell.length_c 50.0
_cell.angle_alpha 90
_cell.angle_beta 90
_cell.angle_gamma 90
_symmetry.space_group_name_H-M 'P 21 21 21'
loop_
_refln.index_h
_refln.index_k
_refln.index_l
_refln.status
_refln.F_meas_au
_refln.F_meas_sigma_au
"""


def test_mmcif_status_flags(tmp_path, rng):
    hkl = miller(3.0)
    status = np.where(rng.random(len(hkl)) < 0.1, "f", "o")
    status[:3] = "x"
    rows = [f"{h} {k} {l} {s} {rng.gamma(2, 50):.1f} 2.0"
            for (h, k, l), s in zip(hkl, status)]
    path = tmp_path / "r1sf.ent"
    path.write_text(CIF + "\n".join(rows) + "\n")
    r = quiet(read_reflections, path)
    assert r.info["file_type"] == "mmcif" and r.info["columns"]["F"] == "F_meas_au"
    assert r.info["rejected"] == {"status '-' or 'x'": 3}
    assert r.info["n_free"] == int((status[3:] == "f").sum())
    path.write_text(CIF + "\n".join(rows).replace(" f ", " o ") + "\n")
    r = quiet(read_reflections, path)
    assert r.free is None and "all reflections marked work" in r.info["free_problem"]


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_reflections(tmp_path / "missing.mtz")
    junk = tmp_path / "junk.mtz"
    junk.write_bytes(b"\0\1\2garbage" * 100)
    with pytest.raises(FormatError, match="junk.mtz.*neither an MTZ nor an mmCIF"):
        read_reflections(junk)
    model = tmp_path / "model.cif"
    model.write_text("data_x\nloop_\n_atom_site.id\n_atom_site.type_symbol\n1 C\n")
    with pytest.raises(InputError, match="model.cif.*no _refln loop"):
        read_reflections(model)
    nof = tmp_path / "nof.cif"
    nof.write_text(CIF.replace("_refln.F_meas_au\n_refln.F_meas_sigma_au\n", "")
                   + "1 2 3 o\n2 3 4 o\n")
    with pytest.raises(InputError, match="no amplitudes or intensities.*status"):
        read_reflections(nof)


def test_map_coefficients(tmp_path, rng):
    n = len(miller())
    amp, ph = rng.random(n) * 10, rng.random(n) * 360
    path = write_mtz(tmp_path / "m.mtz", [("FWT", "F", amp), ("PHWT", "P", ph),
                                          ("DELFWT", "F", amp / 2), ("PHDELWT", "P", ph)])
    hkl, coef, cell, sg = read_map_coefficients(path)
    assert coef.dtype == np.complex128 and hkl.shape == (n, 3)
    np.testing.assert_allclose(coef, amp * np.exp(1j * np.deg2rad(ph)), rtol=1e-5, atol=1e-5)
    _, coef2, _, _ = read_map_coefficients(path, "fofc")
    np.testing.assert_allclose(np.abs(coef2), amp / 2, rtol=1e-5)
    assert sg.hm == "P 21 21 21" and cell.a == pytest.approx(30.0)
    bare = write_mtz(tmp_path / "bare.mtz", amplitude_columns(rng, n))
    with pytest.raises(InputError, match="no 2fofc map coefficients.*FP\\(F\\)"):
        read_map_coefficients(bare)


def test_check_model_compatible(tmp_path, rng):
    n = len(miller())
    r = quiet(read_reflections, write_mtz(tmp_path / "k.mtz", amplitude_columns(rng, n)))
    check_model_compatible(r, UnitCell(30.1, 40.0, 50.0), "P 21 21 21", "m.pdb")
    check_model_compatible(r, gemmi.UnitCell(30, 40, 50, 90, 90, 90), "P212121", "m.pdb")
    with pytest.raises(InputError, match=r"m.pdb.*31.00 40.00.*30.00 40.00"):
        check_model_compatible(r, (31.0, 40.0, 50.0, 90, 90, 90), "P 21 21 21", "m.pdb")
    with pytest.raises(InputError, match=r"'P 1 21 1'.*'P 21 21 21'"):
        check_model_compatible(r, (30.0, 40.0, 50.0, 90, 90, 90), "P 1 21 1", "m.pdb")
    with pytest.warns(DensrefineWarning, match="no unit cell"):
        check_model_compatible(r, None, "P 21 21 21", "m.pdb")


# ---------------------------------------------------------------- bad input (issue 17)


def test_empty_amplitudes_fall_back_to_intensities(tmp_path, rng, densrefine_log):
    """FP present but all NaN, IMEAN filled: the intensities are used (French–Wilson) and
    the choice is logged, instead of a silent R from nothing or an error."""
    n = len(miller())
    j = rng.exponential(1000.0, n)
    cols = [("FP", "F", np.full(n, np.nan)), ("SIGFP", "Q", np.full(n, np.nan)),
            ("IMEAN", "J", j), ("SIGIMEAN", "Q", np.full(n, 20.0)),
            ("FreeR_flag", "I", rng.integers(0, 20, n))]
    path = write_mtz(tmp_path / "e.mtz", cols)
    caplog = densrefine_log
    r = read_reflections(path)
    assert r.info["columns"]["I"] == "IMEAN" and r.info["source"].startswith("intensities")
    assert len(r) == n and np.corrcoef(r.f, np.sqrt(j))[0, 1] > 0.99
    text = caplog.text
    assert "FP" in text and "no values" in text and "French-Wilson" in text
    with pytest.raises(InputError, match=r"FP.*hold no values.*--labin"):
        read_reflections(path, labin="FP,SIGFP")


def test_all_nan_observations_are_an_error(tmp_path, rng):
    n = len(miller())
    path = write_mtz(tmp_path / "nan.mtz", [("FP", "F", np.full(n, np.nan)),
                                            ("SIGFP", "Q", np.full(n, np.nan))])
    with pytest.raises(InputError, match=r"nan.mtz.*no amplitudes or intensities.*FP\(F\)"):
        read_reflections(path)


@pytest.mark.parametrize("values,shares", [((0, 1, 2), (0.8, 0.1, 0.1)),
                                           ((2, 5, 9), (0.05, 0.5, 0.45)),
                                           ((-3, 0, 4), (0.1, 0.45, 0.45))])
def test_flags_without_a_convention(tmp_path, rng, values, shares):
    """More than two flag values and no known convention: R-free is n/a with a reason
    that names the values and the fix (--free-flag); with --free-flag it is used."""
    n = len(miller())
    flags = rng.choice(np.array(values, float), size=n, p=shares)
    path = write_mtz(tmp_path / "f.mtz", amplitude_columns(rng, n, flags))
    with pytest.warns(DensrefineWarning, match="no usable free set"):
        r = read_reflections(path)
    assert r.free is None
    assert "no known convention" in r.info["free_problem"]
    assert "--free-flag" in r.info["free_problem"] and f"{values[0]:g}:" in r.info["free_problem"]
    rare = values[int(np.argmin(shares))]
    r2 = quiet(read_reflections, path, free_flag=rare)
    assert r2.info["n_free"] == int((flags == rare).sum()) > 0


def test_ccp4_flags_still_detected_with_uneven_shares(tmp_path, rng):
    n = len(miller())
    flags = rng.integers(0, 20, n)
    path = write_mtz(tmp_path / "c.mtz", amplitude_columns(rng, n, flags))
    r = read_reflections(path)
    assert r.info["convention"] == "ccp4: test = 0 (flags 0..19)"


@pytest.mark.parametrize("recoverable", [True, False])
def test_flags_as_float_bit_patterns(tmp_path, rng, recoverable, densrefine_log):
    """Integer flags written bit-for-bit into a float column (5A3H's MTZ): recovered
    (logged) when the integers are a CCP4 partition, else diagnosed as unrecoverable."""
    n = len(miller())
    ints = (rng.integers(0, 20, n) if recoverable
            else np.minimum(rng.geometric(0.08, n), 38)).astype(np.int32)
    flags = ints.view(np.float32)
    path = write_mtz(tmp_path / "bits.mtz", amplitude_columns(rng, n, flags, "FREE"))
    if recoverable:
        r = quiet(read_reflections, path)
        assert r.info["n_free"] == int((ints == 0).sum()) > 0
        assert "bit patterns" in densrefine_log.text
    else:
        r = quiet(read_reflections, path)
        assert r.free is None and "not recoverable" in r.info["free_problem"]
