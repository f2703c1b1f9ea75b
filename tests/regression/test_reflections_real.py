"""read_reflections / read_map_coefficients on the shared X-ray entries (3IO0, 5E5Z, 5A3H)."""
from __future__ import annotations

import warnings

import gemmi
import numpy as np
import pytest

from densrefine.errors import DensrefineWarning, InputError
from densrefine.io import (check_model_compatible, read_map_coefficients, read_model,
                           read_reflections)
from tests.conftest import require_data


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DensrefineWarning)
        return fn(*a, **k)


def test_3io0_amplitudes_and_ccp4_flags():
    r = read_reflections(require_data("3io0", "3io0-sf.mtz"))
    assert r.info["columns"] == {"F": "FOBS", "SIGF": "SIGFOBS", "FREE": "R-free-flags"}
    assert r.info["source"] == "amplitudes"
    assert len(r) == 17475 and r.info["n_free"] == 883 == int(r.free.sum())
    assert "test = 0" in r.info["convention"]
    assert r.spacegroup.hm == "I 21 3" and r.cell.a == pytest.approx(173.41)
    assert r.d_min() == pytest.approx(3.0, abs=0.01)
    assert r.info["n_rejected"] == 0


def test_3io0_french_wilson_matches_fobs():
    path = require_data("3io0", "3io0-sf.mtz")
    fo = read_reflections(path)
    fw = read_reflections(path, labin="IOBS,SIGIOBS")
    assert fw.info["source"] == "intensities (French-Wilson)"
    assert len(fw) == 17475 and fw.info["n_free"] == 883
    index = {h: i for i, h in enumerate(map(tuple, fo.hkl.tolist()))}
    idx = np.array([index[h] for h in map(tuple, fw.hkl.tolist())])
    cc = np.corrcoef(fw.f, fo.f[idx])[0, 1]
    assert cc > 0.999   # measured 0.99965 (IOBS is on a 1/100 scale of FOBS²)


def test_3io0_anomalous_pairs_merged():
    path = require_data("3io0", "3io0-sf.mtz")
    r = read_reflections(path, labin="F(+),SIGF(+),F(-),SIGF(-),R-free-flags")
    fo = read_reflections(path)
    assert r.info["source"] == "anomalous pairs merged" and len(r) == 17475
    assert np.corrcoef(r.f, fo.f)[0, 1] > 0.999   # same order: both from the file rows


def test_5e5z_small_free_set_is_kept():
    with pytest.warns(DensrefineWarning, match="only 18 free"):
        r = read_reflections(require_data("5e5z", "5e5z.mtz.gz"))
    assert len(r) == 403 and r.info["n_free"] == 18 and r.info["free_problem"] is None
    assert r.info["columns"]["F"] == "FP"
    fw = quiet(read_reflections, require_data("5e5z", "5e5z.mtz.gz"), labin="I,SIGI,FREE")
    assert np.corrcoef(fw.f, r.f)[0, 1] > 0.99


def test_5a3h_mtz_broken_flags():
    with pytest.warns(DensrefineWarning, match="no usable free set"):
        r = read_reflections(require_data("5a3h", "5a3h_sigmaa.mtz"))
    assert len(r) == 26363 and r.free is None
    assert "flags" in r.info["free_problem"] and "not integers" in r.info["free_problem"]
    assert r.info["columns"]["F"] == "FP"


def test_5a3h_mmcif_all_work():
    r = quiet(read_reflections, require_data("5a3h", "r5a3hsf.ent.gz"))
    assert r.info["file_type"] == "mmcif" and r.info["columns"]["F"] == "F_meas_au"
    assert len(r) == 27142 and r.free is None
    assert "all reflections marked work ('o')" in r.info["free_problem"]
    assert r.spacegroup.hm == "P 21 21 21"


def test_5a3h_model_compatible_and_resolution_error():
    r = quiet(read_reflections, require_data("5a3h", "5a3h_sigmaa.mtz"))
    model = read_model(require_data("5a3h", "5a3h.pdb.gz"))
    check_model_compatible(r, model.cell, model.space_group, model.path)
    other = quiet(read_reflections, require_data("3io0", "3io0-sf.mtz"))
    with pytest.raises(InputError, match="173.41.*54.71|54.71.*173.41"):
        check_model_compatible(other, model.cell, model.space_group, model.path)
    with pytest.raises(InputError, match="1.82"):
        read_reflections(require_data("5a3h", "5a3h_sigmaa.mtz"), d_min=1.5)


def test_5a3h_map_coefficients_match_gemmi():
    path = require_data("5a3h", "5a3h_sigmaa.mtz")
    hkl, coef, cell, sg = read_map_coefficients(path)
    assert len(hkl) == 26363 and sg.hm == "P 21 21 21"
    ref = gemmi.read_mtz_file(str(path)).get_f_phi("FWT", "PHWT")
    np.testing.assert_array_equal(hkl, ref.miller_array)
    np.testing.assert_allclose(coef, ref.value_array, rtol=1e-5, atol=1e-4)
    # the map from these coefficients is positive at the atoms (README: 2.94 sigma)
    asu = gemmi.ComplexAsuData(cell, sg, hkl, coef.astype(np.complex64))
    m = asu.transform_f_phi_to_map(sample_rate=2.0)
    model = read_model(require_data("5a3h", "5a3h.pdb.gz"))
    vals = np.array([m.interpolate_value(gemmi.Position(*x)) for x in model.atoms.xyz[:300]])
    arr = np.array(m, copy=False)
    assert (vals.mean() - arr.mean()) / arr.std() > 2.0


def test_5e5z_fofc_map_coefficients_missing():
    with pytest.raises(InputError, match="no fofc map coefficients"):
        read_map_coefficients(require_data("5e5z", "5e5z.mtz.gz"), "fofc")
