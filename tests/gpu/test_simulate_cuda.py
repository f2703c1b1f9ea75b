"""The simulate kernel on CUDA gives the CPU's values and gradients (skipped without CUDA)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from densrefine.density import iam
from densrefine.simulate import GridFrame, simulate_tensor, splat

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")]


def _case(rng, n, frame, dtype, device):
    ext = frame.cell_matrix.sum(1)
    c = frame.origin + rng.random((n, 3)) * ext
    amp = rng.random((n, 5)) + 0.1
    width = 20 + rng.random((n, 5)) * 60
    return [torch.tensor(x, dtype=dtype, device=device) for x in (c, amp, width)]


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("path", ["cells", "boxes"])
def test_cuda_matches_cpu(periodic, path):
    rng = np.random.default_rng(3)
    fr = GridFrame.box((40, 44, 48), (0.9, 1.0, 1.1), origin=(-2.0, 1.0, 0.0), periodic=periodic)
    g = torch.tensor(rng.standard_normal(fr.shape))
    results = []
    for dev in ("cpu", "cuda"):
        leaves = [t.requires_grad_() for t in _case(np.random.default_rng(7), 3000, fr,
                                                     torch.float64, dev)]
        m = splat(*leaves, fr, path=path)
        assert m.device.type == dev
        (m * g.to(dev)).sum().backward()
        results.append([m.detach().cpu()] + [t.grad.cpu() for t in leaves])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_cuda_float32_simulate_tensor_and_gradcheck():
    fr = GridFrame.box((10, 11, 12), 0.9)
    coeffs = iam.coefficients_from(["C", "O"], "electron")
    dev = "cuda"
    xyz = torch.tensor([[3.0, 4.1, 4.0], [5.2, 6.0, 3.9]], dtype=torch.float64, device=dev)
    b = torch.tensor([15.0, 22.0], dtype=torch.float64, device=dev)
    occ = torch.tensor([1.0, 0.7], dtype=torch.float64, device=dev)
    inputs = tuple(t.clone().requires_grad_() for t in (xyz, b, occ))
    for method in ("blur", "fourier"):
        def f(x, bb, o, method=method):
            return simulate_tensor(x, bb, o, coeffs, fr, blur=6.0, cutoff=1e-4, method=method,
                                   d_min=2.5)
        assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4,
                                        fast_mode=True)
    m32 = simulate_tensor(xyz.float(), b.float(), occ.float(), coeffs, fr, blur=6.0)
    m64 = simulate_tensor(xyz, b, occ, coeffs, fr, blur=6.0)
    assert m32.dtype == torch.float32 and m32.is_cuda
    torch.testing.assert_close(m32.double(), m64, rtol=1e-4, atol=1e-6)
