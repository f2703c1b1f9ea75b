"""densrefine's simulated maps agree with gemmi's DensityCalculatorE/X (same process).

Same P1 box (the map's voxel size, a margin of 12 Å so gemmi's periodic wrap and
densrefine's box edges do not matter), same blur, same cutoff (1e-5). gemmi keeps a
sphere of the cutoff radius around each atom, densrefine the enclosing cube of voxels,
so the maps differ only by density below the cutoff.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest

from tests.conftest import EM_PAIRS, require_data

import gemmi  # noqa: E402 - a hard dependency: a broken install must fail, not skip

import densrefine as dr
from densrefine.simulate import box_around, refmac_blur, simulate

# each model once (the 6vyb pairs share a model and grid spacing)
CASES = {(folder, model): (mapname, res) for folder, model, mapname, res in EM_PAIRS
         if "shifted" not in model}


@contextlib.contextmanager
def _gemmi_ions(table):
    """gemmi's X-ray table ignores charges by default; densrefine uses IT92 ions."""
    old = gemmi.IT92_get_ignore_charge()
    gemmi.IT92_set_ignore_charge(table != "xray")
    try:
        yield
    finally:
        gemmi.IT92_set_ignore_charge(old)


def gemmi_map(path, like, table, blur, cutoff=1e-5):
    """gemmi's density on ``like``'s grid (a P1 box), as (nz, ny, nx)."""
    st = gemmi.read_structure(str(path))
    model = st[0]
    model.transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(), gemmi.Vec3(*(-like.origin))))
    dc = gemmi.DensityCalculatorE() if table == "electron" else gemmi.DensityCalculatorX()
    nx, ny, nz = like.shape_xyz
    dc.grid.set_unit_cell(gemmi.UnitCell(*like.extent, 90, 90, 90))
    dc.grid.spacegroup = gemmi.SpaceGroup("P 1")
    dc.grid.set_size(int(nx), int(ny), int(nz))
    dc.blur = float(blur)
    dc.cutoff = cutoff
    with _gemmi_ions(table):
        dc.add_model_density_to_grid(model)
    dc.grid.symmetrize_sum()
    return np.array(dc.grid, copy=True).transpose(2, 1, 0)


def gemmi_fourier(dens, like, d_min, blur):
    """gemmi_simulate.py's band-limited map (numpy FFT), keeping s < 1/d_min strictly."""
    f = np.fft.rfftn(dens)
    nz, ny, nx = dens.shape
    vx, vy, vz = like.voxel_size
    lz = np.fft.fftfreq(nz) / vz
    ky = np.fft.fftfreq(ny) / vy
    hx = np.arange(nx // 2 + 1) / (nx * vx)
    s2 = lz[:, None, None] ** 2 + ky[None, :, None] ** 2 + hx[None, None, :] ** 2
    f *= np.where(s2 < 1.0 / d_min**2, np.exp(blur * s2 / 4.0), 0.0)
    return np.fft.irfftn(f, s=dens.shape, axes=(0, 1, 2))


def agreement(ours, ref):
    pearson = float(np.corrcoef(ours.ravel(), ref.ravel())[0, 1])
    rel_rms = float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))
    return pearson, rel_rms


@pytest.fixture(scope="module", params=sorted(CASES), ids=lambda k: k[1].split(".")[0])
def case(request):
    folder, model_name = request.param
    mapname, res = CASES[request.param]
    path = require_data(folder, model_name)
    voxel = float(dr.read_map(require_data(folder, mapname)).voxel_size[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dr.read_model(path)
    like = box_around(model.atoms.xyz, voxel, margin=12.0)
    return path, model, like, res


@pytest.mark.peer
@pytest.mark.parametrize("table", ["electron", "xray"])
@pytest.mark.parametrize("blur_kind", ["refmac", "4d2"])
def test_real_space_matches_gemmi(case, table, blur_kind):
    path, model, like, res = case
    blur = (refmac_blur(float(model.atoms.b_iso.min()), like.voxel_size.max())
            if blur_kind == "refmac" else 4 * res**2)
    ours = simulate(model, like, resolution=res, table=table, blur=blur, device="cpu").values
    ref = gemmi_map(path, like, table, blur)
    pearson, rel_rms = agreement(ours, ref)
    assert pearson >= 0.9999, (pearson, rel_rms)
    assert rel_rms <= 0.01, (pearson, rel_rms)


@pytest.mark.peer
def test_fourier_matches_gemmi(case):
    path, model, like, res = case
    blur = refmac_blur(float(model.atoms.b_iso.min()), like.voxel_size.max())
    ours = simulate(model, like, resolution=res, method="fourier", blur=blur,
                    device="cpu").values
    ref = gemmi_fourier(gemmi_map(path, like, "electron", blur), like, res, blur)
    pearson, rel_rms = agreement(ours, ref)
    assert pearson >= 0.9999, (pearson, rel_rms)
    assert rel_rms <= 0.01, (pearson, rel_rms)
