"""R-work / R-free on every shared X-ray entry against cctbx ``mmtbx.model_vs_data``
(numbers stored below; the live peer script ``cctbx_model_vs_data.py`` runs in the peer
venv where it exists, marked ``peer``) and against the deposited header values; twinned
data (1L2H, and 3NR7, which turns out twinned too) against cctbx and servalcat with the
twin law; the 4HG7 difference map; F_calc against cctbx's ``fmodel.f_calc()`` on 5E5Z.

Acceptance (issues 4, 17): |ΔR| ≤ 0.01 against cctbx on every entry (without a twin
model, as cctbx's default), ≤ 0.015 against the header where the header's model is the
one given and was refined without a twin model; 1L2H with ``twin="auto"``: law −h,k,−l,
fraction within 0.05 of 0.34, R within 0.02 of the header. 5A3H's free flags are
unusable, which must be detected (R-free None with a reason).
"""
from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import warnings

import numpy as np
import pytest

from tests.conftest import peers_dir, peers_python, require_data

# case: (folder, model, data, extra phil args for cctbx, header R-work, header R-free)
CASES = {
    "3io0": ("3io0", "3io0_before.pdb.gz", "3io0-sf.mtz",
             ["f_obs_label=FOBS", "r_free_flags_label=R-free-flags"], 0.188, 0.203),
    "5e5z": ("5e5z", "5e5z.pdb.gz", "5e5z.mtz.gz", [], 0.167, 0.198),
    "5a3h_mtz": ("5a3h", "5a3h.pdb.gz", "5a3h_sigmaa.mtz", [], 0.144, None),
    "5a3h_cif": ("5a3h", "5a3h.pdb.gz", "r5a3hsf.ent.gz", [], 0.144, None),
    "3ay4": ("3ay4", "3ay4.pdb.gz", "3ay4.mtz.gz", [], 0.223, 0.263),
    "3nr7": ("3nr7", "3nr7.pdb.gz", "3nr7.mtz", [], 0.271, 0.304),
    "1l2h": ("1l2h", "1l2h.cif.gz", "1l2h.mtz.gz", [], 0.154, 0.193),
    "4hg7": ("4hg7", "4hg7_no_ligand.pdb.gz", "4hg7.mtz.gz", [], 0.173, 0.215),
}
# cctbx-base 2025.11 mmtbx.model_vs_data, default options (no twin law), measured
# 2026-12-07 with cctbx_model_vs_data.py: R-work, R-free, n_work, n_free
CCTBX = {
    "3io0": (0.1889, 0.1996, 16590, 883), "5e5z": (0.1706, 0.1952, 380, 18),
    "5a3h_mtz": (0.1509, None, 26362, 0), "5a3h_cif": (0.1490, None, 27140, 0),
    "3ay4": (0.2134, 0.2483, 50468, 2703), "3nr7": (0.2701, 0.2927, 5247, 427),
    "1l2h": (0.2532, 0.2751, 30259, 1519), "4hg7": (0.2818, 0.2864, 20069, 1065),
}
# with the twin law: cctbx model_vs_data twin_law=LAW (R-work, R-free, fraction) and
# servalcat 0.4 ``sigmaa --twin`` (R-work, R-free, fraction; 1L2H: R1 on I/σ > 2)
TWIN = {
    "1l2h": ("-h,k,-l", (0.1526, 0.1930, 0.36), (0.1453, 0.1855, 0.346)),
    "3nr7": ("-h-k,k,-l", (0.2553, 0.2786, 0.21), (0.2496, 0.2666, 0.185)),
}
# the header's R is of this model, refined without a twin model (4HG7: ligand removed;
# 1L2H: twin-refined, checked with the twin model instead)
HEADER_MODEL = ["3io0", "5e5z", "5a3h_mtz", "5a3h_cif", "3ay4", "3nr7"]
FAST = ["5e5z", "3io0", "3nr7", "1l2h"]           # ours 1-8 s each
SLOWER = ["5a3h_mtz", "5a3h_cif", "3ay4", "4hg7"]


def run_cctbx(case, extra=()) -> dict:
    folder, model, data, args, *_ = CASES[case]
    script = peers_dir() / "cctbx_model_vs_data.py"
    p = subprocess.run([str(peers_python()), str(script), str(require_data(folder, model)),
                        str(require_data(folder, data)), *args, *extra],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_ours(key):
    """``key``: a case (twin model off, as cctbx's default) or (case, twin mode)."""
    from densrefine import read_model
    from densrefine.xtal import rfactor

    case, twin = (key, "off") if isinstance(key, str) else key
    folder, model, data, *_ = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rfactor(read_model(require_data(folder, model)), require_data(folder, data),
                       twin=twin)


class _Cache:
    """Results computed once per test module (cctbx runs take ~3 s each)."""

    def __init__(self, fn):
        self.fn, self.store = fn, {}

    def __getitem__(self, case):
        if case not in self.store:
            self.store[case] = self.fn(case)
        return self.store[case]


@pytest.fixture(scope="module")
def cctbx():
    return _Cache(run_cctbx)


@pytest.fixture(scope="module")
def ours():
    return _Cache(run_ours)


def _check_vs_cctbx(rep, ref):
    """``ref``: (r_work, r_free, n_work, n_free) of cctbx."""
    r_work, r_free, n_work, n_free = ref
    assert abs(rep.r_work - r_work) <= 0.01, (rep.r_work, ref)
    if r_free is None:
        assert rep.r_free is None
    else:
        assert rep.r_free is not None and abs(rep.r_free - r_free) <= 0.01, (rep.r_free, ref)
        assert abs(rep.n_free - n_free) <= 0.01 * n_free + 1
    # same data: reflection counts within 2 % (cctbx drops a few outliers)
    assert abs(rep.n_work - n_work) <= 0.02 * n_work + 1


def _check_vs_header(case, rep):
    *_, h_work, h_free = CASES[case]
    assert abs(rep.r_work - h_work) <= 0.015, rep.r_work
    if h_free is not None:
        assert abs(rep.r_free - h_free) <= 0.015, rep.r_free


@pytest.mark.parametrize("case", FAST)
def test_rfactor_vs_cctbx(case, ours):
    _check_vs_cctbx(ours[case], CCTBX[case])


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOWER)
def test_rfactor_vs_cctbx_slow(case, ours):
    _check_vs_cctbx(ours[case], CCTBX[case])


@pytest.mark.parametrize("case", [c for c in HEADER_MODEL if c in FAST])
def test_rfactor_vs_header(case, ours):
    _check_vs_header(case, ours[case])


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in HEADER_MODEL if c in SLOWER])
def test_rfactor_vs_header_slow(case, ours):
    _check_vs_header(case, ours[case])


def _check_live(case, ours, cctbx):
    """The peer today gives the stored numbers (±0.001), and ours agree with it."""
    ref = cctbx[case]
    r_work, r_free, *_ = CCTBX[case]
    assert abs(ref["r_work"] - r_work) <= 0.001, ref
    assert (ref["r_free"] is None) == (r_free is None)
    if r_free is not None:
        assert abs(ref["r_free"] - r_free) <= 0.001, ref
    _check_vs_cctbx(ours[case], (ref["r_work"], ref["r_free"], ref["n_work"], ref["n_free"]))


@pytest.mark.peer
@pytest.mark.parametrize("case", ["5e5z", "3io0", "3nr7"])
def test_rfactor_vs_cctbx_live(case, ours, cctbx):
    _check_live(case, ours, cctbx)


@pytest.mark.peer
@pytest.mark.slow
@pytest.mark.parametrize("case", ["1l2h", "5a3h_mtz", "5a3h_cif", "3ay4", "4hg7"])
def test_rfactor_vs_cctbx_live_slow(case, ours, cctbx):
    _check_live(case, ours, cctbx)


# ---------------------------------------------------------------- twinning


def test_1l2h_twin_auto(ours):
    """1L2H: the law −h,k,−l found, fraction within 0.05 of 0.34 (servalcat's tests),
    R within 0.02 of the (twin-refined) header and within 0.01 of cctbx with that law."""
    rep = ours[("1l2h", "auto")]
    tw = rep.twin
    law, (c_work, c_free, c_alpha), (s_work, s_free, s_alpha) = TWIN["1l2h"]
    assert tw["applied"] and tw["law"] == law and tw["analysis"]["indicated"]
    assert abs(tw["fraction"] - 0.34) <= 0.05 and abs(tw["fraction"] - c_alpha) <= 0.03
    assert tw["analysis"]["l_test"]["mean_abs_l"] < 0.44
    assert abs(tw["analysis"]["h_tests"][0]["alpha"] - 0.34) <= 0.05
    assert abs(rep.r_work - 0.154) <= 0.02 and abs(rep.r_free - 0.193) <= 0.02
    assert abs(rep.r_work - c_work) <= 0.01 and abs(rep.r_free - c_free) <= 0.01
    assert abs(rep.r_work - s_work) <= 0.01 and abs(rep.r_free - s_free) <= 0.01
    # the untwinned R is reported too and is the twin="off" result
    off = ours["1l2h"]
    assert tw["untwinned"]["r_work"] == pytest.approx(off.r_work, abs=1e-6)
    assert tw["untwinned"]["r_free"] == pytest.approx(off.r_free, abs=1e-6)
    assert off.twin is None


def test_3nr7_is_twinned(ours):
    """3NR7 (deposited as untwinned) shows the twin law −h−k,k,−l with α ≈ 0.2 in the
    H-test and in the model fit, as in servalcat (0.185) and cctbx (0.21); the twin model
    lowers R-free by > 0.02 with us and with servalcat (cctbx: 0.014). Our twinned R is
    within 0.01 of servalcat's; cctbx's twinned R is higher (its twin scaling)."""
    rep = ours[("3nr7", "auto")]
    tw = rep.twin
    law, (c_work, c_free, c_alpha), (s_work, s_free, s_alpha) = TWIN["3nr7"]
    assert tw["applied"] and tw["law"] == law
    assert abs(tw["fraction"] - s_alpha) <= 0.05 and abs(tw["fraction"] - c_alpha) <= 0.05
    assert tw["untwinned"]["r_free"] - rep.r_free > 0.02
    assert abs(rep.r_work - s_work) <= 0.01 and abs(rep.r_free - s_free) <= 0.01
    assert rep.r_free < c_free


def test_3io0_twin_law_tested_not_applied(ours):
    """3IO0 (I 21 3) has a candidate law but untwinned statistics (L-test from IOBS,
    α_H ≈ 0.02; cctbx refines the fraction to 0.04): R unchanged by twin='auto'."""
    rep = ours[("3io0", "auto")]
    tw = rep.twin
    assert tw["analysis"]["laws"] == ["-h,-l,-k"] and not tw["analysis"]["indicated"]
    assert tw["analysis"]["source"] == "intensities"
    assert tw["analysis"]["l_test"]["mean_abs_l"] > 0.47
    assert tw["analysis"]["h_tests"][0]["alpha"] < 0.05
    assert not tw["applied"] and rep.r_work == pytest.approx(ours["3io0"].r_work, abs=1e-9)


@pytest.mark.peer
@pytest.mark.slow
@pytest.mark.parametrize("case", ["1l2h", "3nr7"])
def test_twin_vs_cctbx_live(case):
    law, (c_work, c_free, c_alpha), _ = TWIN[case]
    ref = run_cctbx(case, [f"twin_law={law}"])
    assert abs(ref["r_work"] - c_work) <= 0.001 and abs(ref["r_free"] - c_free) <= 0.001


# ---------------------------------------------------------------- low resolution, no ANISOU

CCTBX_3NR7_ISO = (0.2887, 0.3104, 5247, 427)     # cctbx, 3NR7 with the ANISOU records removed


def _3nr7_iso(tmp_path):
    path = tmp_path / "3nr7_iso.pdb"
    with gzip.open(require_data("3nr7", "3nr7.pdb.gz"), "rt") as src:
        path.write_text("".join(ln for ln in src if not ln.startswith("ANISOU")))
    return path


def test_3nr7_without_anisou_vs_cctbx(tmp_path):
    """Low resolution (3.7 Å) without ANISOU: bulk solvent (B_sol near its bound) and the
    anisotropic scale carry the fit; F_calc by FFT here."""
    from densrefine import read_model
    from densrefine.xtal import rfactor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = rfactor(read_model(_3nr7_iso(tmp_path)), require_data("3nr7", "3nr7.mtz"),
                      twin="off")
    assert rep.fcalc_method == "fft"
    _check_vs_cctbx(rep, CCTBX_3NR7_ISO)
    b = rep.b_aniso
    assert abs(b[0] - b[1]) < 1e-6 and all(abs(x) < 1e-6 for x in b[3:])   # hexagonal


@pytest.mark.peer
def test_3nr7_without_anisou_live(tmp_path):
    script = peers_dir() / "cctbx_model_vs_data.py"
    p = subprocess.run([str(peers_python()), str(script), str(_3nr7_iso(tmp_path)),
                        str(require_data("3nr7", "3nr7.mtz"))],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    ref = json.loads(p.stdout.strip().splitlines()[-1])
    assert abs(ref["r_work"] - CCTBX_3NR7_ISO[0]) <= 0.001
    assert abs(ref["r_free"] - CCTBX_3NR7_ISO[1]) <= 0.001


def test_5e5z_report_contents(ours):
    rep = ours["5e5z"]
    assert rep.n_free == 18 and rep.n_work == 385
    assert rep.fcalc_method == "direct"               # small model with ANISOU
    assert rep.free_problem is None
    assert rep.reflections["columns"]["F"] == "FP"
    assert sum(s["n_work"] for s in rep.shells) == rep.n_work
    assert sum(s["n_free"] for s in rep.shells) == rep.n_free
    assert rep.shells[0]["d_max"] > rep.shells[-1]["d_min"]
    assert 0.0 <= rep.k_sol <= 1.0 and 0.0 <= rep.b_sol <= 300.0


def test_3io0_scales_and_shells(ours):
    rep = ours["3io0"]
    assert rep.n_free == 883 and rep.n_work == 16592
    assert rep.fcalc_method == "fft"
    # cubic: B_aniso isotropic (B11 = B22 = B33, off-diagonal 0)
    b = np.array(rep.b_aniso)
    assert np.allclose(b[:3], b[0], atol=1e-6) and np.allclose(b[3:], 0, atol=1e-6)
    assert 0.2 < rep.k_sol < 0.6 and 10 < rep.b_sol < 120
    assert len(rep.shells) >= 6
    rw = [s["r_work"] for s in rep.shells]
    assert max(rw) < 0.35 and min(rw) > 0.08


@pytest.mark.slow
@pytest.mark.parametrize("case,why", [("5a3h_mtz", "not integers"), ("5a3h_cif", "status 'f'")])
def test_5a3h_free_flags_unusable(case, why, ours):
    rep = ours[case]
    assert rep.r_free is None and rep.n_free == 0
    assert rep.free_problem and why in rep.free_problem
    assert all(s["r_free"] is None for s in rep.shells)


FCALC_PEER = r"""
import sys, numpy as np
from io import StringIO
from mmtbx import model_vs_data
fmodel = model_vs_data.run(args=sys.argv[2:], log=StringIO())
fft = fmodel.f_calc()                                  # cctbx's default FFT algorithm
direct = fft.structure_factors_from_scatterers(xray_structure=fmodel.xray_structure,
                                               algorithm="direct").f_calc()
assert list(fft.indices()) == list(direct.indices())
hkl = np.array([list(h) for h in fft.indices()], np.int64)
np.savez(sys.argv[1], hkl=hkl, fft=np.array([complex(x) for x in fft.data()]),
         direct=np.array([complex(x) for x in direct.data()]),
         table=fmodel.xray_structure.scattering_type_registry().last_table())
"""


def _nrms(a, ref):
    return float(np.sqrt(np.mean(np.abs(a - ref) ** 2) / np.mean(np.abs(ref) ** 2)))


def test_fcalc_vs_cctbx_5e5z(tmp_path):
    """Ours (IT92, direct summation with ANISOU) against cctbx's F_calc with the same
    table (``scattering_table=it1992``) at the same reflections: cctbx's exact
    (``algorithm="direct"``) F_calc agrees to NRMS 5.6e-7; its default FFT F_calc
    (what fmodel.f_calc() returns) to 0.0066 — the FFT accuracy of cctbx's defaults
    (it1992 direct vs fft: 0.0066). With cctbx's default n_gaussian table: 0.0086."""
    import gemmi

    from densrefine import read_model
    from densrefine.io.reflections import read_reflections
    from densrefine.xtal.fcalc import fcalc

    py = peers_python()
    files = []
    for name in ("5e5z.pdb.gz", "5e5z.mtz.gz"):
        out = tmp_path / name[:-3]
        with gzip.open(require_data("5e5z", name), "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
        files.append(str(out))
    script = tmp_path / "fcalc_peer.py"
    script.write_text(FCALC_PEER)
    npz = tmp_path / "fc.npz"
    p = subprocess.run([str(py), str(script), str(npz), *files, "scattering_table=it1992"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    ref = np.load(npz)
    assert str(ref["table"]) == "it1992"
    model = read_model(require_data("5e5z", "5e5z.pdb.gz"))
    st = model.handle
    sg = gemmi.SpaceGroup(st.spacegroup_hm)
    hkl = ref["hkl"]
    # the same reflections as ours once both are in gemmi's ASU (cctbx's ASU differs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refl = read_reflections(require_data("5e5z", "5e5z.mtz.gz"))
    asu = gemmi.ReciprocalAsu(sg)
    mapped = {tuple(asu.to_asu(list(map(int, h)), sg.operations())[0]) for h in hkl}
    assert mapped <= {tuple(h) for h in refl.hkl.tolist()}
    assert len(mapped) == len(hkl) >= 0.95 * len(refl.hkl)
    # ours at cctbx's own indices (fcalc takes any hkl: no phase bookkeeping needed)
    d_min = float(1 / np.sqrt(st.cell.calculate_1_d2_array(hkl.astype(np.int32)).max()))
    f = fcalc(model, hkl, st.cell, sg, d_min)
    assert _nrms(f, ref["direct"]) <= 1e-5
    assert _nrms(f, ref["fft"]) <= 1e-2
    # negative control: the model shifted by 0.3 Å
    shifted = model.with_atoms(model.atoms.replace(xyz=model.atoms.xyz + [0.3, 0.0, 0.0]))
    assert _nrms(fcalc(shifted, hkl, st.cell, sg, d_min), ref["direct"]) > 0.1


# ---------------------------------------------------------------- 4HG7: the missing ligand

def _site_residues(path, site_id):
    """(chain, number) of the protein residues of a SITE record (ligands and waters dropped)."""
    out = []
    with gzip.open(path, "rt") as f:
        for ln in f:
            if ln.startswith("SITE  ") and ln[11:14].strip() == site_id:
                for k in range(4):
                    fld = ln[18 + 11 * k:29 + 11 * k]
                    if fld.strip() and fld[0:3].strip() not in ("HOH", "NUT", "SO4"):
                        out.append((fld[4].strip(), int(fld[5:9])))
    return out


def _blob(fgrid, cell, centre, level, radius=12.0):
    """Cartesian points (Å) of the connected region ≥ ``level`` (map units) that contains
    ``centre`` (Å), unwrapped around it (the map is periodic)."""
    from scipy import ndimage

    arr = np.array(fgrid, copy=False)
    n = np.array(arr.shape)
    fp = np.array(cell.frac.mat.tolist()) @ np.asarray(centre)
    c = np.round(fp * n).astype(int)
    half = np.ceil(radius / np.array([cell.a, cell.b, cell.c]) * n).astype(int)
    ii = [np.arange(c[k] - half[k], c[k] + half[k] + 1) for k in range(3)]
    box = arr[np.ix_(ii[0] % n[0], ii[1] % n[1], ii[2] % n[2])]
    lab, _ = ndimage.label(box >= level)
    pts = np.argwhere(lab == lab[tuple(half)])
    return ((pts - half + c) / n) @ np.array(cell.orth.mat.tolist()).T


@pytest.mark.slow
def test_4hg7_strongest_difference_peak_is_the_ligand():
    """4HG7 without its ligand (nutlin-3a, NUT A 201): the strongest positive mFo−DFc peak
    lies in the ligand's density. The files carry no ligand coordinates; the position is
    established from the file's SITE records: the connected ≥ 3σ difference density that
    contains the peak is ligand-sized (> 50 Å³; a water's is ~10 Å³) and is lined by the
    binding-site residues of SITE AC1 (BINDING SITE FOR RESIDUE NUT A 201), while the
    sulfate's site (AC2, Lys31) is far away. Measured: 19.8σ at (−26.28, 14.32, −11.98) Å,
    3.6 Å from Leu54 CD1; the density around it is lined by 9 of AC1's 10 residues."""
    from scipy.spatial import cKDTree

    from densrefine import read_model
    from densrefine.xtal.api import make_fmodel
    from densrefine.xtal.peaks import cell_maps, difference_peaks

    mpath = require_data("4hg7", "4hg7_no_ligand.pdb.gz")
    model = read_model(mpath)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fmod = make_fmodel(model, require_data("4hg7", "4hg7.mtz.gz"))
    maps = cell_maps(fmod, ("fofc",))
    pk = difference_peaks(fmod, model, n=10, maps=maps)
    top = pk["positive"][0]
    assert top["height_sigma"] > 12 and top["height_sigma"] > -2 * pk["negative"][0]["height_sigma"]
    at = model.atoms
    key = list(zip(at.chain, at.res_seq.astype(int)))
    ac1 = set(_site_residues(mpath, "AC1"))
    assert len(ac1) == 10
    xyz = np.asarray(top["xyz"])
    # in contact with the pocket: within 4.5 Å of atoms of at least two AC1 residues
    d = np.linalg.norm(at.xyz - xyz, axis=1)
    assert len({k for k, dd in zip(key, d) if dd < 4.5 and k in ac1}) >= 2
    sigma = float(np.array(maps["fofc"], copy=False).std())
    pts = _blob(maps["fofc"], fmod.refl.cell, xyz, 3.0 * sigma)
    volume = len(pts) * fmod.refl.cell.volume / np.array(maps["fofc"], copy=False).size
    assert volume > 50.0
    near, _ = cKDTree(pts).query(at.xyz)
    lining = {k for k, dd in zip(key, near) if dd < 4.0}
    assert len(lining & ac1) >= 7, sorted(lining & ac1)
    ac2 = set(_site_residues(mpath, "AC2"))
    assert not lining & ac2 - ac1               # not the sulfate's site (Lys31, Gln71)
