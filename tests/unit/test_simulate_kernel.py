"""The splat kernel: values, integrals, translation, periodicity, paths, gradients, memory."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from densrefine.density import iam
from densrefine.simulate import GridFrame, fourier_truncate, kernel, simulate_tensor, splat
from densrefine.simulate import cells as cells_mod
from densrefine.simulate import jit as jit_mod

F64 = torch.float64
HAS_JIT = jit_mod.available()
JIT = pytest.param("jit", marks=pytest.mark.skipif(not HAS_JIT, reason="numba unavailable"))
PATHS = ["cells", "boxes", JIT]


def analytic(frame, centres, amp, width):
    """Reference density at every voxel (no cutoff), numpy float64, (nz, ny, nx)."""
    nz, ny, nx = frame.shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    pos = frame.origin + np.stack([i, j, k], -1) @ frame.steps.T
    out = np.zeros(frame.shape)
    for c, a, w in zip(centres, amp, width):
        r2 = ((pos - c) ** 2).sum(-1)[..., None]
        out += (a * (4 * np.pi / w) ** 1.5 * np.exp(-4 * np.pi**2 * r2 / w)).sum(-1)
    return out


def random_case(rng, n, frame, k=3, spill=0.1):
    ext = frame.cell_matrix.sum(1)
    c = frame.origin + (rng.random((n, 3)) * (1 + 2 * spill) - spill) * ext
    amp = rng.random((n, k)) + 0.1
    width = 8 + rng.random((n, k)) * 40
    return (torch.tensor(c, dtype=F64), torch.tensor(amp, dtype=F64),
            torch.tensor(width, dtype=F64))


@pytest.mark.parametrize("path", PATHS)
def test_values_match_formula(rng, path):
    fr = GridFrame.box((18, 20, 22), (0.6, 0.7, 0.8), origin=(-1.0, 2.0, 0.5))
    c, a, w = random_case(rng, 6, fr, spill=0.0)
    got = splat(c, a, w, fr, cutoff=1e-12, path=path).numpy()
    np.testing.assert_allclose(got, analytic(fr, c.numpy(), a.numpy(), w.numpy()), atol=1e-11)


@pytest.mark.parametrize("table", ["electron", "xray"])
def test_single_atom_integral_is_sum_of_a(table):
    fr = GridFrame.box((64, 64, 64), 0.25, origin=(-8.0, -8.0, -8.0))
    coeffs = iam.coefficients_from(["S"], table)
    xyz = torch.tensor([[0.03, -0.07, 0.11]], dtype=F64)
    m = simulate_tensor(xyz, torch.tensor([25.0], dtype=F64), torch.ones(1, dtype=F64), coeffs,
                        fr, blur=5.0, cutoff=1e-9)
    total = float(m.sum()) * 0.25**3
    assert abs(total - coeffs[0].sum()) < 1e-3 * coeffs[0].sum()


def test_translated_atom_gives_translated_map():
    fr = GridFrame.box((24, 26, 28), 0.5, origin=(0.0, 0.0, 0.0))
    a = torch.tensor([[1.0, 0.5]], dtype=F64)
    w = torch.tensor([[15.0, 30.0]], dtype=F64)
    c0 = torch.tensor([[5.1, 6.2, 4.3]], dtype=F64)
    m0 = splat(c0, a, w, fr, cutoff=1e-9).numpy()
    shift = np.array([3, -2, 4])                                   # voxels along x, y, z
    m1 = splat(c0 + torch.tensor(shift * 0.5), a, w, fr, cutoff=1e-9).numpy()
    np.testing.assert_allclose(np.roll(m0, tuple(shift[::-1]), axis=(0, 1, 2)), m1, atol=1e-12)
    # sub-voxel shift: the density peak follows the atom
    m2 = splat(c0 + torch.tensor([[0.2, 0.0, 0.0]], dtype=F64), a, w, fr, cutoff=1e-9).numpy()
    xs = np.arange(28) * 0.5
    cx0, cx2 = (float((m.sum((0, 1)) * xs).sum() / m.sum()) for m in (m0, m2))
    assert abs(cx2 - cx0 - 0.2) < 1e-4


@pytest.mark.parametrize("path", PATHS)
def test_periodic_wrap_vs_clip(path):
    shape = (20, 20, 20)
    clip = GridFrame.box(shape, 0.5)
    per = GridFrame.box(shape, 0.5, periodic=True)
    c = torch.tensor([[0.3, 5.0, 9.8]], dtype=F64)                 # near x = 0 and z = 10 Å
    a, w = torch.ones(1, 1, dtype=F64), torch.full((1, 1), 20.0, dtype=F64)
    m_clip = splat(c, a, w, clip, cutoff=1e-10, path=path).numpy()
    m_per = splat(c, a, w, per, cutoff=1e-10, path=path).numpy()
    assert abs(m_per.sum() * 0.125 - 1.0) < 1e-6                   # nothing lost when periodic
    assert m_clip.sum() * 0.125 < 0.5                              # most of it is cut off
    images = sum(analytic(clip, c.numpy() + np.array([dx, dy, dz]) * 10.0, a.numpy(), w.numpy())
                 for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1))
    np.testing.assert_allclose(m_per, images, atol=1e-9)
    inside = m_clip > 0
    ref = analytic(clip, c.numpy(), a.numpy(), w.numpy())
    np.testing.assert_allclose(m_clip[inside], ref[inside], atol=1e-12)


@pytest.mark.parametrize("periodic", [False, True])
def test_paths_agree_forward_and_backward(rng, periodic):
    fr = GridFrame.box((21, 24, 27), (0.9, 1.0, 1.1), origin=(1.0, -2.0, 0.5), periodic=periodic)
    c, a, w = random_case(rng, 150, fr, k=5)
    w[::17] += 300.0                                               # a few very wide atoms
    g = torch.tensor(rng.standard_normal(fr.shape))
    res = []
    for path in ("cells", "boxes", "auto") + (("jit",) if HAS_JIT else ()):
        leaves = [t.clone().requires_grad_() for t in (c, a, w)]
        m = splat(*leaves, fr, path=path)
        (m * g).sum().backward()
        res.append([m.detach()] + [t.grad for t in leaves])
    for other in res[1:]:
        for x, y in zip(res[0], other):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_non_orthogonal_cell():
    from densrefine.types import UnitCell

    cell = UnitCell(12.0, 13.0, 14.0, 80.0, 100.0, 115.0)
    fr = GridFrame((28, 26, 24), (0.0, 0.0, 0.0), cell.orth / np.array([24, 26, 28]), True)
    assert not fr.is_orthogonal
    c = torch.tensor([[4.0, 5.0, 6.0], [1.0, 9.0, 2.0]], dtype=F64)
    a = torch.tensor([[1.0], [2.0]], dtype=F64)
    w = torch.tensor([[18.0], [25.0]], dtype=F64)
    m = splat(c, a, w, fr, cutoff=1e-10)
    assert abs(float(m.sum()) * cell.volume / m.numel() - 3.0) < 1e-6
    frac = fr.xyz_to_index(c.numpy())
    k = np.rint(frac).astype(int)
    pos = fr.origin + fr.steps @ k[0]
    ref = float((a[0] * (4 * np.pi / w[0]) ** 1.5 *
                 torch.exp(-4 * np.pi**2 * ((torch.tensor(pos) - c[0]) ** 2).sum() / w[0])).sum())
    assert abs(float(m[k[0, 2], k[0, 1], k[0, 0]]) - ref) < 1e-3 * ref   # other atom ~ 0 here


@pytest.mark.parametrize("method", ["blur", "fourier"])
@pytest.mark.parametrize("path", PATHS)
def test_gradcheck_xyz_b_occ(method, path, monkeypatch):
    monkeypatch.setitem(kernel.splat.__kwdefaults__, "path", path)
    fr = GridFrame.box((10, 11, 12), (0.9, 1.0, 0.8), origin=(0.0, 0.0, 0.0))
    coeffs = iam.coefficients_from(["C", "O", "N"], "electron")
    xyz = torch.tensor([[3.0, 4.1, 4.0], [5.2, 6.0, 3.9], [6.5, 4.4, 5.1]], dtype=F64)
    b = torch.tensor([15.0, 22.0, 30.0], dtype=F64)
    occ = torch.tensor([1.0, 0.7, 0.9], dtype=F64)

    def f(x, bb, o):
        return simulate_tensor(x, bb, o, coeffs, fr, blur=6.0, cutoff=1e-4, method=method,
                               d_min=2.5)

    inputs = tuple(t.clone().requires_grad_() for t in (xyz, b, occ))
    # fast mode checks random projections of the Jacobian (full mode: one backward
    # per voxel); the full Jacobian of the kernel is checked below on a tiny grid
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("path", ["cells", JIT])
@pytest.mark.parametrize("periodic", [False, True])
def test_gradcheck_full_jacobian_small(periodic, path):
    fr = GridFrame.box((5, 6, 7), (0.9, 1.0, 1.1), origin=(0.0, 0.0, 0.0), periodic=periodic)
    c = torch.tensor([[2.0, 3.1, 2.4], [4.9, 2.2, 3.3]], dtype=F64, requires_grad=True)
    a = torch.tensor([[1.0, 0.5], [0.8, 0.3]], dtype=F64, requires_grad=True)
    w = torch.tensor([[12.0, 25.0], [18.0, 30.0]], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: splat(*t, fr, cutoff=1e-3, path=path),
                                    (c, a, w), eps=1e-6, atol=1e-7)


def test_float32_matches_float64(rng):
    fr = GridFrame.box((30, 32, 34), 0.8, origin=(-3.0, 0.0, 2.0))
    c, a, w = random_case(rng, 400, fr, k=5)
    m64 = splat(c, a, w, fr)
    c32, a32, w32 = (t.float().requires_grad_() for t in (c, a, w))
    m32 = splat(c32, a32, w32, fr)
    assert m32.dtype == torch.float32
    torch.testing.assert_close(m32.double(), m64, rtol=1e-4, atol=1e-5 * float(m64.max()))
    leaves = [t.clone().requires_grad_() for t in (c, a, w)]
    (splat(*leaves, fr) ** 2).sum().backward()
    (m32 ** 2).sum().backward()
    for t32, t64 in zip((c32, a32, w32), leaves):
        torch.testing.assert_close(t32.grad.double(), t64.grad, rtol=1e-3,
                                   atol=1e-4 * float(t64.grad.abs().max()))


def test_fourier_truncate_cuts_and_unblurs(rng):
    fr = GridFrame.box((24, 20, 22), (0.5, 0.55, 0.6), periodic=True)
    c, a, w = random_case(rng, 30, fr, k=2, spill=0.0)
    w = w + 100.0                                     # well sampled: no aliasing to undo
    blur = 30.0
    sharp = fourier_truncate(splat(c, a, w, fr, cutoff=1e-12), fr, d_min=3.0)
    unblurred = fourier_truncate(splat(c, a, w + blur, fr, cutoff=1e-12), fr, 3.0, unblur=blur)
    torch.testing.assert_close(unblurred, sharp, rtol=1e-6, atol=1e-6 * float(sharp.abs().max()))
    spec = torch.fft.rfftn(sharp).abs()
    nz, ny, nx = fr.shape
    vx, vy, vz = fr.voxel_size
    s2 = ((np.fft.fftfreq(nz) / vz)[:, None, None] ** 2
          + (np.fft.fftfreq(ny) / vy)[None, :, None] ** 2
          + (np.arange(nx // 2 + 1) / (nx * vx))[None, None, :] ** 2)
    assert float(spec[torch.tensor(s2 >= 1 / 9.0)].max()) < 1e-10 * float(spec.max())
    assert abs(float(sharp.sum()) - float(splat(c, a, w, fr, cutoff=1e-12).sum())) < 1e-8


def test_memory_bounded_by_chunks(monkeypatch):
    """Largest buffer of the fast path stays within the chunk budget, whatever the atom count."""
    peak = {"n": 0}
    orig = cells_mod.Workspace.get

    def spy(self, name, shape, dtype=None):
        peak["n"] = max(peak["n"], int(np.prod(shape)))
        return orig(self, name, shape, dtype)

    monkeypatch.setattr(cells_mod.Workspace, "get", spy)
    fr = GridFrame.box((48, 48, 48), 1.0)
    rng = np.random.default_rng(0)
    peaks = []
    for n in (16000, 64000):
        c = torch.tensor(rng.random((n, 3)) * 44 + 2, dtype=torch.float32)
        a = torch.ones(n, 5)
        w = torch.full((n, 5), 60.0)
        peak["n"] = 0
        splat(c, a, w, fr, path="cells").sum()
        peaks.append(peak["n"])
    assert max(peaks) <= kernel.CELL_BUDGET              # the (cells, Wz, Wy, atoms·K) product
    assert peaks[1] < 1.2 * peaks[0]                     # 4× the atoms, same peak


@pytest.mark.parametrize("periodic", [False, True])
def test_worker_threads_give_identical_results(rng, periodic):
    """Batch groups summed in a fixed order: 1 or 2 worker threads, bit for bit the same."""
    fr = GridFrame.box((30, 32, 28), 0.8, origin=(0.5, -1.0, 0.0), periodic=periodic)
    c, a, w = random_case(rng, 400, fr, k=2)
    c, a, w = c.float(), a.float(), w.float()
    g = torch.tensor(rng.standard_normal(fr.shape), dtype=torch.float32)
    res = []
    old = cells_mod.set_workers(1)
    try:
        for n in (1, 2, 1):
            cells_mod.set_workers(n)
            leaves = [t.clone().requires_grad_() for t in (c, a, w)]
            m = splat(*leaves, fr, path="cells")
            (m * g).sum().backward()
            res.append([m.detach()] + [t.grad for t in leaves])
    finally:
        cells_mod.set_workers(old)
    assert len(cells_mod._groups(kernel.SplatPlan(
        fr, fr.xyz_to_index(c.numpy().astype(float)),
        kernel._plan.cutoff_radius(a.double().numpy(), w.double().numpy()), 2,
        "cells").cells)) == 2                                     # both groups have batches
    for other in res[1:]:
        for x, y in zip(res[0], other):
            assert torch.equal(x, y)


def test_kept_buffers_never_leak_into_results(rng):
    """The accumulator is reused between calls; an earlier result must not change."""
    fr = GridFrame.box((16, 16, 16), 1.0)
    c1, a1, w1 = random_case(rng, 60, fr, k=2)
    c2, a2, w2 = random_case(rng, 60, fr, k=2)
    m1 = splat(c1, a1, w1, fr, path="cells")
    keep = m1.clone()
    splat(c2, a2, w2, fr, path="cells")
    assert torch.equal(m1, keep)
    cells_mod.release_workspaces()
    torch.testing.assert_close(splat(c1, a1, w1, fr, path="cells"), keep, rtol=0, atol=0)


def test_kept_index_buffers_follow_each_window_shape(rng):
    """Frames sharing the (z, y) window extent but not the x one reuse kept index buffers
    (a KeyError in a CI fit once); every result must match a fresh-workspace run."""
    for vs in [(1.0, 1.0, 1.0), (0.6, 1.0, 1.0), (0.5, 1.0, 1.0), (2.0, 1.0, 1.0)]:
        fr = GridFrame.box((16, 16, 16), vs)
        c, a, w = random_case(rng, 40, fr, k=2)
        kept = splat(c, a, w, fr, path="cells")
        cells_mod.release_workspaces()
        fresh = splat(c, a, w, fr, path="cells")
        torch.testing.assert_close(kept, fresh, rtol=0, atol=0)
        torch.testing.assert_close(fresh.numpy(), analytic(fr, c.numpy(), a.numpy(), w.numpy()),
                                   rtol=0, atol=1e-6 * float(fresh.max()))


@pytest.mark.skipif(not HAS_JIT, reason="numba unavailable")
@pytest.mark.parametrize("k", [1, 2, 5, 7])
@pytest.mark.parametrize("periodic", [False, True])
def test_jit_float32_matches_torch_path_and_float64(rng, periodic, k, monkeypatch):
    """The compiled path in float32 against the float64 reference (torch cells path) and
    the torch path in float32: maps and all three gradients within float32 rounding
    (largest error / largest value: both paths measure 1e-6 to 6e-6 here, the compiled
    one the smaller). 1, 2, 5 and 7 Gaussians per atom: the counts the compiled plane
    loop writes out, and passes of five beyond."""
    fr = GridFrame.box((26, 30, 35), (0.9, 1.0, 1.1), origin=(0.0, -1.0, 2.0), periodic=periodic)
    c, a, w = random_case(rng, 300, fr, k=k)
    w[::23] += 200.0                                             # a few wide atoms
    g = torch.tensor(rng.standard_normal(fr.shape))

    def run(dtype, path, env):
        monkeypatch.setenv("DENSREFINE_JIT", env)
        leaves = [t.to(dtype).clone().requires_grad_() for t in (c, a, w)]
        m = splat(*leaves, fr, path=path)
        (m * g.to(dtype)).sum().backward()
        return [m.detach().double()] + [t.grad.double() for t in leaves]

    ref = run(F64, "cells", "0")
    torch32, jit32 = run(torch.float32, "auto", "0"), run(torch.float32, "jit", "1")
    for r, x, y in zip(ref, torch32, jit32):
        scale = float(r.abs().max())
        assert float((y - r).abs().max()) < 1e-5 * scale
        assert float((y - x).abs().max()) < 2e-5 * scale


@pytest.mark.skipif(not HAS_JIT, reason="numba unavailable")
@pytest.mark.parametrize("periodic", [False, True])
def test_jit_workers_give_identical_results(rng, periodic, monkeypatch):
    """z slabs (forward) and atom runs (backward) per worker: 1, 2 or 3 workers give the
    same map and gradients bit for bit."""
    fr = GridFrame.box((40, 32, 28), 0.8, origin=(0.5, -1.0, 0.0), periodic=periodic)
    c, a, w = random_case(rng, 600, fr, k=2)
    c, a, w = c.float(), a.float(), w.float()
    g = torch.tensor(rng.standard_normal(fr.shape), dtype=torch.float32)
    res = []
    monkeypatch.setattr(jit_mod, "MIN_ATOMS_PER_WORKER", 50)
    for n in (1, 2, 3):
        monkeypatch.setattr(kernel, "_workers", lambda n=n: n)
        plan = kernel.SplatPlan(fr, fr.xyz_to_index(c.numpy().astype(float)),
                                kernel._plan.cutoff_radius(a.double().numpy(),
                                                           w.double().numpy()), 2, "jit", True)
        assert len(plan.jit.slabs) == len(plan.jit.runs) == n     # really split n ways
        leaves = [t.clone().requires_grad_() for t in (c, a, w)]
        m = splat(*leaves, fr, path="jit")
        (m * g).sum().backward()
        res.append([m.detach()] + [t.grad for t in leaves])
    for other in res[1:]:
        for x, y in zip(res[0], other):
            assert torch.equal(x, y)


@pytest.mark.skipif(not HAS_JIT, reason="numba unavailable")
def test_jit_refuses_what_it_cannot_do(monkeypatch):
    fr = GridFrame.box((8, 8, 8), 1.0)
    c = torch.zeros(1, 3, dtype=torch.float16)
    with pytest.raises(ValueError, match="path='jit'"):
        splat(c, torch.ones(1, 1, dtype=torch.float16), torch.full((1, 1), 20.0,
              dtype=torch.float16), fr, path="jit")
    monkeypatch.setenv("DENSREFINE_JIT", "0")
    assert not jit_mod.available()


NO_NUMBA = """
import sys
sys.modules["numba"] = None                    # `import numba` raises ImportError
import numpy as np
import densrefine as dr
from densrefine.simulate import jit
m = dr.read_model(sys.argv[1])
s = dr.simulate(m, dr.read_map(sys.argv[2]), resolution=3.0)
np.save(sys.argv[3], np.asarray(s.values))
print("jit", jit.available(), "numba" in sys.modules and sys.modules["numba"] is not None)
"""


def test_without_numba_simulate_takes_the_torch_path(tmp_path):
    """numba missing: the same map from the torch kernels (a fresh process that cannot
    import numba), within float32 rounding of this process's (compiled or torch) map."""
    import os
    import subprocess
    import sys

    import densrefine as dr
    from tests.conftest import ROOT

    model, emap = ROOT / "example_maps" / "helix_start.pdb", ROOT / "example_maps" / "helix_3A.mrc"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", NO_NUMBA, str(model), str(emap),
                        str(tmp_path / "m.npy")], capture_output=True, text=True, env=env,
                       check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["jit", "False", "False"]
    here = np.asarray(dr.simulate(dr.read_model(model), dr.read_map(emap), resolution=3.0).values)
    there = np.load(tmp_path / "m.npy")
    assert np.abs(there - here).max() < 1e-5 * np.abs(here).max()


def test_unusable_numba_falls_back_with_a_warning(monkeypatch, caplog):
    """numba installed but its kernel module fails to load (e.g. RuntimeError 'cannot
    cache function' without a writable cache directory): the torch kernels serve."""
    def broken():
        raise RuntimeError("cannot cache function 'forward': no locator available")

    monkeypatch.setitem(jit_mod._STATE, "tried", False)
    monkeypatch.setitem(jit_mod._STATE, "kernels", None)
    monkeypatch.setattr(jit_mod, "_build", broken)
    monkeypatch.delenv("DENSREFINE_JIT", raising=False)
    # the CLI tests set up the "densrefine" logger without propagation to the root
    monkeypatch.setattr(logging.getLogger("densrefine"), "propagate", True)
    with caplog.at_level("WARNING", logger="densrefine"):
        assert not jit_mod.available()
    assert "torch kernels" in caplog.text
    fr = GridFrame.box((12, 12, 12), 1.0)
    c, a, w = random_case(np.random.default_rng(0), 20, fr, k=2)
    torch.testing.assert_close(splat(c, a, w, fr), splat(c, a, w, fr, path="cells"),
                               rtol=0, atol=0)
