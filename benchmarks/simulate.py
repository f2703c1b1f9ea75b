#!/usr/bin/env python3
"""Time densrefine's map simulation against gemmi's DensityCalculatorE, same model, same grid.

usage: python benchmarks/simulate.py [--sizes 1000,10000,100000] [--repeat 3]
                                     [--model PATH] [--res 3.0] [--spacing 1.0]
                                     [--devices cpu,cuda] [--memory] [--markdown FILE]

Models of ~1k/10k/100k atoms are built by replicating a shared-data model (default
EMD-3488's 5NI1, 4579 atoms, hydrogens removed) on a 3-D lattice (offset = extent +
4 Å), truncated at whole residues. The grid is a P1 box around the copy (5 Å margin,
FFT-friendly sizes) with spacing 1.0 Å; resolution 3 Å. Timed (best of --repeat,
seconds; gemmi runs single-threaded, torch uses its default threads):

  blur      densrefine method="blur", B_extra = 4 d² = 36 Å²   vs gemmi blur = 36 Å²
  fourier   densrefine method="fourier" (refmac blur, FFT, unblur, cut at d)
            vs gemmi refmac blur + numpy FFT/unblur/cut (gemmi_simulate.py's recipe)
  fwd+bwd   densrefine blur map + backward of sum(map · target) to xyz, B, occ
            (gemmi has no gradients: the ratio is against gemmi's forward)

densrefine timings start from a `Model` (coefficient lookup, radii, planning and the
kernel included; no file I/O), gemmi's from a `gemmi.Model` on a zeroed grid. Each
timing is the best of --repeat wall times; the CPU seconds of that run (all threads)
follow in brackets, steadier than wall time on a shared machine. Every row names the
machine: CPU SIMD flags (AVX2 / AVX-512 / NEON), cores, torch threads, torch's kernel
level and the splat path (``jit``: compiled numba kernels, with numba's target CPU;
``torch``: with DENSREFINE_JIT=0). To time a machine without AVX-512 on one that has
it, run with ``NUMBA_CPU_NAME=haswell ATEN_CPU_CAPABILITY=avx2``.
--memory measures peak RSS of separate processes simulating 100k atoms on the
216 × 360 × 216 grid (16.8 M voxels) at 1 Å, forward and forward + backward.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data",
                             "emd-3488_5ni1", "5ni1_updated.cif.gz")


def replicate(st, n_target, fit=None):
    """gemmi.Structure with ~n_target atoms: copies of st's first model on a lattice.

    ``fit`` (3 floats, Å): use as many copies per axis as fit in that box instead of a
    cube of copies.
    """
    import gemmi

    base = st[0]
    xyz = np.array([c.atom.pos.tolist() for c in base.all()])
    lo, hi = xyz.min(0), xyz.max(0)
    step = hi - lo + 4.0
    k = int(np.ceil((n_target / len(xyz)) ** (1 / 3)))
    counts = (k, k, k) if fit is None else tuple(
        max(1, int((f - (hi - lo)[i] - 10.0) // step[i]) + 1) for i, f in enumerate(fit))
    out, model, n = gemmi.Structure(), gemmi.Model("1"), 0
    for idx in np.ndindex(*counts):
        shift = gemmi.Position(*(np.array(idx) * step - lo))
        for ch in base:
            new = gemmi.Chain(f"{ch.name}{len(model)}")
            for res in ch:
                if n >= n_target:
                    break
                r = res.clone()
                for at in r:
                    at.pos = at.pos + shift
                new.add_residue(r)
                n += len(r)
            if len(new):
                model.add_chain(new)
        if n >= n_target:
            break
    out.add_model(model)
    return out


def make_case(src_path, n, spacing, shape_xyz=None):
    """(gemmi model shifted into the box, densrefine Model, like Grid)."""
    import gemmi

    from densrefine import Grid, Model
    from densrefine.io.model import atoms_from_gemmi
    from densrefine.simulate import box_around

    src = gemmi.read_structure(src_path)
    src.remove_hydrogens()
    fit = None if shape_xyz is None else np.asarray(shape_xyz) * spacing
    st = replicate(src, n, fit)
    atoms = atoms_from_gemmi(st[0])
    if shape_xyz is None:
        like = box_around(atoms.xyz, spacing, margin=5.0)
    else:
        n_xyz = np.asarray(shape_xyz)
        centre = 0.5 * (atoms.xyz.min(0) + atoms.xyz.max(0))
        like = Grid.box(tuple(n_xyz[::-1]), spacing, centre - 0.5 * (n_xyz - 1) * spacing)
    st[0].transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(), gemmi.Vec3(*(-like.origin))))
    return st, Model(atoms), like


def gemmi_calc(st, like, blur, res, fourier):
    import gemmi

    dc = gemmi.DensityCalculatorE()
    dc.grid.set_unit_cell(gemmi.UnitCell(*like.extent, 90, 90, 90))
    dc.grid.spacegroup = gemmi.SpaceGroup("P 1")
    dc.grid.set_size(*(int(v) for v in like.shape_xyz))
    if fourier:
        dc.d_min = res
        dc.set_refmac_compatible_blur(st[0])
    else:
        dc.blur = blur

    def run():
        dc.grid.fill(0.0)
        t0 = time.perf_counter()
        dc.add_model_density_to_grid(st[0])
        dc.grid.symmetrize_sum()
        if fourier:
            arr = np.array(dc.grid, copy=False)
            f = np.fft.rfftn(arr)
            nu, nv, nw = arr.shape
            vx, vy, vz = like.voxel_size
            s2 = ((np.fft.fftfreq(nu) / vx)[:, None, None] ** 2
                  + (np.fft.fftfreq(nv) / vy)[None, :, None] ** 2
                  + (np.arange(nw // 2 + 1) / (nw * vz))[None, None, :] ** 2)
            f *= np.where(s2 < 1 / res**2, np.exp(dc.blur * s2 / 4), 0.0)
            np.fft.irfftn(f, s=arr.shape, axes=(0, 1, 2))
        return time.perf_counter() - t0
    return run


def ours(model, like, res, method, device, backward=False):
    import torch

    from densrefine.density import iam
    from densrefine.simulate import GridFrame, simulate, simulate_tensor

    def sync():
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()

    if not backward:
        def run():
            sync()
            t0 = time.perf_counter()
            simulate(model, like, resolution=res, method=method, device=device,
                     return_tensor=True)
            sync()
            return time.perf_counter() - t0
        return run
    at = model.atoms
    frame = GridFrame.from_grid(like)
    target = torch.randn(like.shape, device=device)

    def run_bwd():
        sync()
        t0 = time.perf_counter()
        kw = {"dtype": torch.float32, "device": device}
        xyz, b, occ = (torch.tensor(v, **kw).requires_grad_() for v in (at.xyz, at.b_iso, at.occ))
        m = simulate_tensor(xyz, b, occ, iam.coefficients(at, "electron"), frame,
                            blur=4 * res**2)
        (m * target).sum().backward()
        sync()
        return time.perf_counter() - t0
    return run_bwd


def best(fn, repeat):
    """(wall, CPU) seconds of the fastest of ``repeat`` calls after one warm-up."""
    fn()                                   # warm-up (first call allocates, loads kernels)
    runs = []
    for _ in range(repeat):
        c0 = time.process_time()
        w = fn()
        runs.append((w, time.process_time() - c0))
    return min(runs)


def machine() -> str:
    """CPU SIMD flags, cores, torch threads and kernel level, splat path: one line."""
    import platform

    import torch

    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags.update(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [name for name, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f"),
                                    ("NEON", "asimd")) if flag in flags]
    if platform.machine() in ("arm64", "aarch64") and "NEON" not in simd:
        simd.append("NEON")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    from densrefine.simulate import jit

    if jit.available():
        import numba

        path = f"jit (numba {numba.__version__}, target {os.environ.get('NUMBA_CPU_NAME', 'host')})"
    else:
        path = "torch"
    return (f"{'+'.join(simd) or 'no AVX2/NEON'}, {cores} cores, {torch.get_num_threads()} "
            f"threads, torch {torch.backends.cpu.get_cpu_capability()}, {path}")


def _rss_mb():
    """(current RSS, peak RSS) of this process in MB.

    /proc/self/status VmHWM is per address space, so it starts afresh after exec;
    ru_maxrss would inherit the parent's high-water mark on Linux.
    """
    try:
        with open("/proc/self/status") as f:
            kv = dict(line.split(":", 1) for line in f if ":" in line)
        return int(kv["VmRSS"].split()[0]) / 1024, int(kv["VmHWM"].split()[0]) / 1024
    except OSError:
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return r, r


def memory_child(kind, npz):
    """Simulate the atoms saved in ``npz`` in a fresh process; print peak RSS as JSON."""
    import torch

    from densrefine import Atoms, Grid, Model

    d = np.load(npz)
    n = len(d["xyz"])
    atoms = Atoms(xyz=d["xyz"], b_iso=d["b"], occ=d["occ"], element=d["element"],
                  atomic_number=np.zeros(n), charge=np.zeros(n), chain=["A"] * n,
                  res_name=["UNK"] * n, res_seq=np.zeros(n), icode=[" "] * n,
                  atom_name=["X"] * n, altloc=[""] * n, het=np.zeros(n, bool),
                  res_index=np.zeros(n))
    model = Model(atoms)
    like = Grid.box(tuple(int(v) for v in d["shape_zyx"]), 1.0, d["origin"])
    inside = np.all((like.xyz_to_index(atoms.xyz) >= 0) &
                    (like.xyz_to_index(atoms.xyz) <= np.array(like.shape_xyz) - 1), axis=1)
    base = _rss_mb()[1]
    t0 = time.perf_counter()
    if kind == "fwd":
        simulate_fn = ours(model, like, 3.0, "blur", "cpu")
    else:
        simulate_fn = ours(model, like, 3.0, "blur", "cpu", backward=True)
    simulate_fn()
    dt = time.perf_counter() - t0
    peak = _rss_mb()[1]
    print(json.dumps({"kind": kind, "atoms": n, "inside": int(inside.sum()),
                      "grid": list(like.shape_xyz), "voxels": int(np.prod(like.shape)),
                      "seconds": round(dt, 3), "rss_before_mb": round(base),
                      "peak_rss_mb": round(peak), "threads": torch.get_num_threads()}))


def measure_memory(src, n=100000, shape_xyz=(216, 360, 216)):
    """Peak RSS of fresh processes simulating n atoms on a grid of ``shape_xyz`` voxels."""
    import tempfile

    _, model, like = make_case(src, n, 1.0, shape_xyz=shape_xyz)
    at = model.atoms
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "atoms.npz")
        np.savez(npz, xyz=at.xyz, b=at.b_iso, occ=at.occ, element=at.element,
                 shape_zyx=np.array(like.shape), origin=like.origin)
        for kind in ("fwd", "fwdbwd"):
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child",
                                  kind, "--model", npz], capture_output=True, text=True,
                                 check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def _pair(ours_t, peer_t) -> str:
    """"ours [CPU] / gemmi [CPU] (wall ratio)"."""
    return (f"{ours_t[0]:.3f} [{ours_t[1]:.3f}] / {peer_t[0]:.3f} [{peer_t[1]:.3f}] "
            f"({ours_t[0] / peer_t[0]:.2f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--res", type=float, default=3.0)
    ap.add_argument("--spacing", type=float, default=1.0)
    ap.add_argument("--devices", default=None, help="default: cpu, plus cuda when available")
    ap.add_argument("--memory", action="store_true", help="also measure peak RSS (100k atoms)")
    ap.add_argument("--markdown", help="write the table to this file")
    ap.add_argument("--memory-child", choices=["fwd", "fwdbwd"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory_child:
        import warnings

        warnings.simplefilter("ignore")
        return memory_child(a.memory_child, a.model)

    import logging
    import warnings

    import gemmi
    import torch

    logging.getLogger("densrefine").setLevel(logging.WARNING)
    warnings.simplefilter("ignore")
    devices = a.devices.split(",") if a.devices else ["cpu"] + (
        ["cuda"] if torch.cuda.is_available() else [])
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    mach = machine()
    lines = [(f"# densrefine {__import__('densrefine').__version__} vs gemmi "
              f"{gemmi.__version__}, torch {torch.__version__}, {cpu}, load average "
              f"{os.getloadavg()[0]:.2f}, resolution {a.res} Å, spacing {a.spacing} Å, best of "
              f"{a.repeat} (wall s [CPU s])"),
             ("| atoms | grid (x×y×z) | device | blur: ours / gemmi (ratio) | fourier: ours / "
              "gemmi (ratio) | fwd+bwd ours (ratio to gemmi fwd) | machine |"),
             "|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for n in (int(x) for x in a.sizes.split(",")):
        st, model, like = make_case(a.model, n, a.spacing)
        g_blur = best(gemmi_calc(st, like, 4 * a.res**2, a.res, False), a.repeat)
        g_four = best(gemmi_calc(st, like, None, a.res, True), a.repeat)
        for dev in devices:
            t_blur = best(ours(model, like, a.res, "blur", dev), a.repeat)
            t_four = best(ours(model, like, a.res, "fourier", dev), a.repeat)
            t_bwd = best(ours(model, like, a.res, "blur", dev, backward=True), a.repeat)
            row = (f"| {len(model):,} | {'×'.join(str(v) for v in like.shape_xyz)} | {dev} | "
                   f"{_pair(t_blur, g_blur)} | {_pair(t_four, g_four)} | "
                   f"{t_bwd[0]:.3f} [{t_bwd[1]:.3f}] ({t_bwd[0] / g_blur[0]:.2f}) | "
                   f"{mach}{'' if dev == 'cpu' else ' (GPU)'} |")
            print(row, flush=True)
            lines.append(row)
    if a.memory:
        lines += ["", ("| 100k atoms on 216×360×216 (16.8 M voxels), fresh process | atoms in "
                       "box | seconds | RSS before | peak RSS |"), "|---|---|---|---|---|"]
        for r in measure_memory(a.model):
            lines.append(f"| {r['kind']} (cpu, {r['threads']} threads) | {r['inside']:,} | "
                         f"{r['seconds']} | {r['rss_before_mb']} MB | {r['peak_rss_mb']} MB |")
        print("\n".join(lines[-4:]))
    if a.markdown:
        with open(a.markdown, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
