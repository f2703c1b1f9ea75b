"""MRC / CCP4 maps ↔ `densrefine.types.Grid`; the ONLY place header words become an origin.

Frame rules (MRC2014: Cheng et al. 2015, J. Struct. Biol. 192, 146; CCP4 map format)
--------------------------------------------------------------------------------------
* Data are stored column (fastest) / row / section. MAPC, MAPR, MAPS (words 17-19)
  say which of x, y, z (1, 2, 3) each file axis runs along. The data are transposed to
  ``values[z, y, x]`` (C order, x fastest) for any of the six permutations. NX, NY, NZ
  and NXSTART, NYSTART, NZSTART (words 1-3 and 5-7) are in file-axis order
  (column, row, section) and are permuted to x, y, z the same way.
* MX, MY, MZ (words 8-10), the cell a, b, c (words 11-13) and ORIGIN (words 50-52)
  are already in x, y, z order. ``voxel_size`` = (a/MX, b/MY, c/MZ) Å, so non-cubic
  voxels are fine; MX..MZ of 0 fall back to the grid size (with a warning).
* Non-orthogonal cells (X-ray maps) are kept: the step vectors are the cell axes
  divided by MX, MY, MZ (`Grid.index_to_xyz`).
* ``start`` (x, y, z) is NXSTART.. permuted; "start·voxel" below means the Cartesian
  position of grid point ``start`` of the cell, ``(cell.orth / full_shape) @ start``.
* The origin (position of ``values[0, 0, 0]``, Å) is chosen as follows:

  ============================  ==================================================
  NSTART (any ≠ 0) / ORIGIN     origin used
  ============================  ==================================================
  zero / zero                   0
  zero / non-zero               ORIGIN (MRC2014 sub-volume origin; EMDB boxes)
  non-zero / zero               start·voxel (CCP4 convention; current EMDB entries)
  non-zero / non-zero, agree    start·voxel (they agree within 1e-3 Å)
  non-zero / non-zero, differ   start·voxel, and a `DensrefineWarning` giving both
  ============================  ==================================================

  An ORIGIN that is NaN/Inf or beyond 1e6 Å (uninitialised, e.g. RELION 2.0) is
  ignored with a warning.

How the peers do it (checked on gemmi 0.7.5, servalcat 0.4.142, ChimeraX source):

* gemmi ``read_ccp4_map`` + ``setup()`` places the data at NSTART inside a grid of
  the whole cell (MX, MY, MZ) and ignores ORIGIN entirely; an ORIGIN-only box
  therefore lands at 0 in gemmi.
* servalcat ``utils.fileio.read_ccp4_map`` reads through gemmi, logs
  "ORIGIN header is not supported" and zeroes ORIGIN (NSTART wins).
* ChimeraX ``map_data/mrc/mrc_format.py`` uses ORIGIN whenever it is non-zero and
  valid, else NSTART·step (ORIGIN wins when both are set).
* mrcfile only exposes the header words; it never combines them into a frame.

So for files with only one of the two set, all agree with the rule above (gemmi and
servalcat excepted for ORIGIN-only boxes); when both are set and differ densrefine
follows gemmi/servalcat/CCP4 and says so.

`write_map` writes mode 2 (float32), axis order 1, 2, 3, MX..MZ = ``full_shape``,
cell = ``grid.cell``. When the origin lies on the cell's grid (origin = s·voxel for
an integer s, within 1e-4 Å) it writes NSTART = s and ORIGIN = 0 (the EMDB
convention, read identically by gemmi, cctbx and ChimeraX); otherwise NSTART = 0
and ORIGIN = origin (only ORIGIN-aware readers such as ChimeraX and densrefine then
place it right).
"""
from __future__ import annotations

import logging
import os
import warnings
from types import SimpleNamespace

import numpy as np

from .. import __version__
from ..errors import DensrefineWarning, FormatError, check_readable, format_error, input_error
from ..types import Grid, UnitCell
from .atomic import atomic_path, check_output_path

log = logging.getLogger("densrefine")

MAP_SUFFIXES = (".mrc", ".map", ".ccp4", ".mrcs")
_SUPPORTED_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
_AGREE_TOL = 1e-3  # Å, ORIGIN vs start·voxel
_ON_GRID_TOL = 1e-4  # Å, writing NSTART instead of ORIGIN
_MAX_ORIGIN = 1e6  # Å, larger ORIGIN values are taken as uninitialised


_format_error = format_error


def is_map_path(path) -> bool:
    """True when ``path`` has a map suffix (.mrc, .map, .ccp4, .mrcs, optionally .gz)."""
    low = os.fspath(path).lower().removesuffix(".gz")
    return low.endswith(MAP_SUFFIXES)


def looks_like_map(path) -> bool:
    """True for a map suffix, or an existing file with the 'MAP ' word at byte 208."""
    if is_map_path(path):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(212)
    except OSError:
        return False
    return head[208:212] == b"MAP "


# --------------------------------------------------------------------------- reading

def read_map(path) -> Grid:
    """Read an MRC/CCP4 map (optionally gzipped) into a `Grid` in the model frame.

    See the module docstring for the frame rules (axis order, NSTART vs ORIGIN).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Grid
        ``values`` (nz, ny, nx) float32; ``voxel_size`` (3,) Å; ``origin`` (3,) Å;
        ``start``, ``full_shape`` (x, y, z); ``axis_order`` = (MAPC, MAPR, MAPS).

    Raises
    ------
    InputError
        Missing file or directory.
    FormatError
        Not an MRC/CCP4 map, unsupported mode, zero-size grid, truncated data, a cell
        with a zero edge, or NaN/Inf values.
    """
    path = _check_readable(path)
    header, data = _open(path)
    frame = _frame(header, path)
    values = _values_zyx(header, data, frame["axes"], path)
    _check_values(values, path)
    grid = Grid(values=values, voxel_size=frame["voxel_size"], origin=frame["origin"],
                cell=frame["cell"], space_group=_space_group(int(header.ispg), path),
                full_shape=frame["full_shape"], start=frame["start"],
                axis_order=frame["axis_order"], path=path)
    log.info("Read map %s: grid %s (x,y,z), voxel %s Å, origin %s Å (%s), axis order %s, "
             "start %s, cell %s", path, _fmt_int(grid.shape_xyz), _fmt(grid.voxel_size),
             _fmt(grid.origin), frame["convention"], _fmt_int(grid.axis_order),
             _fmt_int(grid.start), _fmt(grid.cell.parameters))
    return grid


def _check_readable(path) -> str:
    return check_readable(path, "a map file", "give an .mrc or .map file")


def _open(path):
    """Header and raw data (file order) via mrcfile, with our own validation.

    The header is checked first (MAP word, sizes, mode, file length) so that a
    corrupt header never makes mrcfile allocate or read a bogus data block.
    """
    header = _mrcfile_read(path, header_only=True).header
    if bytes(header.map) != b"MAP ":
        raise _format_error(path, "not an MRC/CCP4 map (no 'MAP ' identifier at byte 208)",
                            "give an MRC2014/CCP4 map file")
    dims = [int(header.nx), int(header.ny), int(header.nz)]
    if min(dims) <= 0:
        raise _format_error(path, f"grid size {dims} has a zero or negative dimension",
                            "the header is corrupt; regenerate the map")
    mode = int(header.mode)
    if mode not in _SUPPORTED_MODES:
        raise _format_error(path, f"map mode {mode} is not supported",
                            "convert it to mode 2 (float32), e.g. with mrcfile or gemmi")
    need = int(np.prod(dims, dtype=np.int64)) * np.dtype(_SUPPORTED_MODES[mode]).itemsize
    have = None
    if not path.lower().endswith((".gz", ".bz2")):
        have = os.path.getsize(path) - 1024 - max(int(header.nsymbt), 0)
    if have is not None and have < need:
        raise _truncated(path, need, have)
    data = _mrcfile_read(path, header_only=False).data
    if data is None:
        raise _truncated(path, need, have)
    return header, data


def _mrcfile_read(path, header_only: bool):
    """Run mrcfile.open (permissive), turning its failures into a FormatError."""
    import mrcfile

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with mrcfile.open(path, mode="r", permissive=True,
                              header_only=header_only) as mrc:
                result = SimpleNamespace(header=mrc.header.copy(),
                                         data=None if header_only else mrc.data)
        except (ValueError, OSError, EOFError, OverflowError, MemoryError) as exc:
            raise _format_error(path, f"not a readable MRC/CCP4 map ({exc})",
                                "give an MRC2014/CCP4 map file") from None
    for w in caught:
        log.debug("mrcfile: %s: %s", path, w.message)
    return result


def _truncated(path, need, have) -> FormatError:
    got = "" if have is None else f", {max(have, 0)} present"
    return _format_error(path, f"data block is shorter than the header says ({need} bytes "
                         f"expected{got})",
                         "the file is truncated or corrupt; download or write it again")


def _frame(header, path) -> dict:
    """Axis permutation, sampling, cell and origin from the header words."""
    axes = _axes(header, path)
    crs_size = (int(header.nx), int(header.ny), int(header.nz))
    crs_start = (int(header.nxstart), int(header.nystart), int(header.nzstart))
    size_xyz, start_xyz = np.zeros(3, np.int64), np.zeros(3, np.int64)
    for i, ax in enumerate(axes):
        size_xyz[ax], start_xyz[ax] = crs_size[i], crs_start[i]
    full = np.array([int(header.mx), int(header.my), int(header.mz)], np.int64)
    if np.any(full <= 0):
        warnings.warn(f"{path}: MX, MY, MZ = {full.tolist()} are not positive; using the "
                      f"grid size {size_xyz.tolist()} as the cell sampling",
                      DensrefineWarning, stacklevel=4)
        full = size_xyz.copy()
    cell = _cell(header, path)
    steps = cell.orth / full[None, :]  # columns: step vectors along x, y, z
    origin, convention = _choose_origin(steps @ start_xyz, start_xyz,
                                        np.array([_f32(x) for x in header.origin.tolist()]), path)
    return {"axes": axes, "axis_order": tuple(int(a) + 1 for a in axes), "cell": cell,
            "full_shape": full, "start": start_xyz, "origin": origin,
            "voxel_size": np.array(cell.parameters[:3]) / full, "convention": convention}


def _f32(x) -> float:
    """A float32 header word as the shortest decimal that rounds to it (200.16, not
    200.16000366); differs from the float32 value by < 1 ulp."""
    return float(str(np.float32(x)))


def _axes(header, path) -> tuple[int, int, int]:
    """Spatial axis (0=x, 1=y, 2=z) of the column, row and section file axes."""
    m = (int(header.mapc), int(header.mapr), int(header.maps))
    if sorted(m) != [1, 2, 3]:
        warnings.warn(f"{path}: MAPC/MAPR/MAPS = {m} is not a permutation of 1, 2, 3; "
                      "assuming 1, 2, 3 (columns along x)", DensrefineWarning, stacklevel=5)
        m = (1, 2, 3)
    return (m[0] - 1, m[1] - 1, m[2] - 1)


def _cell(header, path) -> UnitCell:
    abc = [_f32(x) for x in header.cella.tolist()]
    ang = [_f32(x) for x in header.cellb.tolist()]
    if not all(np.isfinite(abc)) or min(abc) <= 0:
        raise _format_error(path, f"cell edges {abc} include a zero, negative or non-finite "
                            "value", "fix the header (cell = voxel size × MX, MY, MZ)")
    if (not all(np.isfinite(ang)) or min(ang) <= 0 or max(ang) >= 180
            or max(ang) >= 0.5 * sum(ang)):
        warnings.warn(f"{path}: invalid cell angles {ang}; using 90, 90, 90",
                      DensrefineWarning, stacklevel=5)
        ang = [90.0, 90.0, 90.0]
    return UnitCell(*abc, *ang)


def _choose_origin(from_start, start, origin_word, path) -> tuple[np.ndarray, str]:
    """Apply the NSTART/ORIGIN rule of the module docstring; return (origin, convention)."""
    if not np.all(np.isfinite(origin_word)) or np.max(np.abs(origin_word)) > _MAX_ORIGIN:
        warnings.warn(f"{path}: ORIGIN {origin_word.tolist()} looks uninitialised; ignored",
                      DensrefineWarning, stacklevel=5)
        origin_word = np.zeros(3)
    has_start, has_origin = bool(np.any(start != 0)), bool(np.any(origin_word != 0))
    if not has_start and not has_origin:
        return np.zeros(3), "NSTART and ORIGIN both zero"
    if not has_start:
        return origin_word, "from ORIGIN, NSTART zero"
    if not has_origin:
        return from_start, "from NSTART, ORIGIN zero"
    if np.max(np.abs(origin_word - from_start)) <= _AGREE_TOL:
        return from_start, "NSTART and ORIGIN agree"
    warnings.warn(f"{path}: NSTART gives origin {_fmt(from_start)} Å but ORIGIN says "
                  f"{_fmt(origin_word)} Å; using NSTART (CCP4/gemmi/servalcat convention), "
                  "ORIGIN ignored", DensrefineWarning, stacklevel=5)
    return from_start, "from NSTART, ORIGIN ignored"


def _values_zyx(header, data, axes, path) -> np.ndarray:
    """Reshape file data to (section, row, column) and transpose to (z, y, x)."""
    crs = (int(header.nx), int(header.ny), int(header.nz))
    arr = np.asarray(data).reshape(crs[2], crs[1], crs[0])
    # data axis d (0 section, 1 row, 2 column) runs along spatial axis axes[2 - d]
    perm = [next(d for d in range(3) if axes[2 - d] == 2 - a) for a in range(3)]
    return np.ascontiguousarray(arr.transpose(perm), dtype=np.float32)


def _check_values(values, path) -> None:
    finite = np.isfinite(values)
    if not finite.all():
        n_nan = int(np.isnan(values).sum())
        n_inf = int(values.size - finite.sum() - n_nan)
        raise _format_error(path, f"map holds {n_nan} NaN and {n_inf} Inf values "
                            f"(of {values.size})",
                            "replace them (e.g. by 0 or the map mean) and write the map again")
    if values.size and float(values.max()) == float(values.min()):
        warnings.warn(f"{path}: every map value equals {float(values.flat[0]):g}",
                      DensrefineWarning, stacklevel=4)


def _space_group(ispg: int, path) -> str:
    if ispg in (0, 1):  # 0 = image stack label, used by many EM writers for volumes too
        return "P 1"
    if ispg > 400:  # MRC2014 volume stacks: 400 + space group number
        ispg -= 400
    import gemmi

    sg = gemmi.find_spacegroup_by_number(ispg) if 1 <= ispg <= 230 else None
    if sg is None:
        warnings.warn(f"{path}: unknown space group number {ispg}; using P 1",
                      DensrefineWarning, stacklevel=4)
        return "P 1"
    return sg.hm


# --------------------------------------------------------------------------- writing

def write_map(grid: Grid, path, *, inputs=()) -> str:
    """Write a `Grid` as an MRC2014 file (mode 2, axis order 1, 2, 3), atomically.

    Parameters
    ----------
    grid : Grid
    path : str or os.PathLike
        ``.mrc``, ``.map``, ``.ccp4`` or ``.mrcs``, optionally ``.gz`` (gzip).
    inputs : sequence of paths
        Files that must not be overwritten (``grid.path`` is always included).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    InputError
        Unknown suffix, output equal to an input, or missing output folder.
    """
    import mrcfile

    if not is_map_path(path):
        raise input_error(path, "unknown map suffix", "name the output .mrc or .map")
    path = check_output_path(path, (grid.path, *inputs))
    nstart, origin_word = _header_frame(grid)
    gz = os.fspath(path).lower().endswith(".gz")
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True, compression="gzip" if gz else None) as mrc:
            mrc.set_data(np.ascontiguousarray(grid.values, dtype=np.float32))
            _fill_header(mrc.header, grid, nstart, origin_word)
            mrc.update_header_stats()
            _add_label(mrc)
    log.info("Wrote map %s: grid %s, voxel %s Å, origin %s Å as %s", path,
             _fmt_int(grid.shape_xyz), _fmt(grid.voxel_size), _fmt(grid.origin),
             f"NSTART {_fmt_int(nstart)}" if origin_word is None else "ORIGIN")
    return path


def _header_frame(grid: Grid) -> tuple[np.ndarray, np.ndarray | None]:
    """(NSTART x,y,z, ORIGIN or None): NSTART when the origin lies on the cell grid."""
    steps = grid.cell.orth / grid.full_shape[None, :]
    s = np.round(np.linalg.solve(steps, grid.origin)).astype(np.int64)
    if np.max(np.abs(steps @ s - grid.origin)) <= _ON_GRID_TOL:
        return s, None
    return np.zeros(3, np.int64), np.asarray(grid.origin, float)


def _fill_header(h, grid: Grid, nstart, origin_word) -> None:
    h.mapc, h.mapr, h.maps = 1, 2, 3
    h.mx, h.my, h.mz = (int(x) for x in grid.full_shape)
    h.cella = tuple(grid.cell.parameters[:3])
    h.cellb = tuple(grid.cell.parameters[3:])
    h.nxstart, h.nystart, h.nzstart = (int(x) for x in nstart)
    h.origin = (0.0, 0.0, 0.0) if origin_word is None else tuple(origin_word)
    h.ispg = _space_group_number(grid.space_group)


def _space_group_number(name: str) -> int:
    import gemmi

    sg = gemmi.find_spacegroup_by_name(name or "P 1")
    return 1 if sg is None else int(sg.number)


def _add_label(mrc) -> None:
    import time

    mrc.add_label(f"densrefine {__version__} {time.strftime('%Y-%m-%d %H:%M:%S')}")


# --------------------------------------------------------------------------- summary

def map_summary(grid: Grid) -> dict:
    """Frame and value statistics of a map (used by ``densrefine info``).

    Parameters
    ----------
    grid : Grid

    Returns
    -------
    dict
        ``shape_xyz``, ``voxel_size`` (Å), ``origin`` (Å), ``start``, ``full_shape``,
        ``axis_order``, ``cell``, ``space_group``, ``extent`` (Å), ``min``, ``max``,
        ``mean``, ``rms`` (root mean square deviation from the mean, as MRC2014 RMS).
    """
    v = grid.values.astype(np.float64)
    return {
        "path": grid.path, "shape_xyz": list(grid.shape_xyz),
        "voxel_size": grid.voxel_size.tolist(), "origin": grid.origin.tolist(),
        "start": grid.start.tolist(), "full_shape": grid.full_shape.tolist(),
        "axis_order": list(grid.axis_order), "cell": list(grid.cell.parameters),
        "space_group": grid.space_group, "extent": grid.extent.tolist(),
        "min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()),
        "rms": float(v.std()),
    }


def _fmt(x) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in x) + ")"


def _fmt_int(x) -> str:
    return "(" + ", ".join(str(int(v)) for v in x) + ")"
