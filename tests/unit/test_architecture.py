"""The package layering of docs/ARCHITECTURE.md holds: every import (module level or inside a
function) of a densrefine package goes to a lower level; grid helpers live in grid/ only;
no library package imports the benchmark tool `densrefine.perturb`."""
from __future__ import annotations

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PKG = ROOT / "densrefine"
DOC = ROOT / "docs" / "ARCHITECTURE.md"


def layer_table() -> dict[str, int]:
    """{package: level} from the table in docs/ARCHITECTURE.md."""
    levels = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|([^|]+)\|", line)
        if m:
            for name in re.findall(r"`([\w_]+)`", m.group(2)):
                levels[name] = int(m.group(1))
    return levels


def _package_of(path: pathlib.Path, pkg: pathlib.Path = PKG) -> str:
    rel = path.relative_to(pkg)
    return "<root>" if rel.parts == ("__init__.py",) else rel.parts[0].removesuffix(".py")


def _module_parts(path: pathlib.Path, pkg: pathlib.Path) -> list[str]:
    parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def imports_of(path: pathlib.Path, pkg: pathlib.Path = PKG):
    """(target package, imported names, line) of every densrefine import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    mod = _module_parts(path, pkg)
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod if is_pkg else mod[:-1]
                base = base[:len(base) - (node.level - 1)]
                full = base + (node.module.split(".") if node.module else [])
            else:
                full = (node.module or "").split(".")
            if full[0] != "densrefine":
                continue
            names = [a.name for a in node.names]
            if len(full) == 1:      # from densrefine import x / from .. import x
                for n in names:
                    yield (n if (pkg / n).exists() or (pkg / f"{n}.py").exists() else "<root>",
                           [n], node.lineno)
            else:
                yield full[1], names, node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "densrefine":
                    yield (parts[1] if len(parts) > 1 else "<root>"), [a.name], node.lineno


def violations(pkg: pathlib.Path = PKG) -> list[str]:
    """Imports in the package tree ``pkg`` that run against the layer table."""
    levels = layer_table()
    bad = []
    for path in sorted(pkg.rglob("*.py")):
        src = _package_of(path, pkg)
        for dst, names, line in imports_of(path, pkg):
            if dst == src:
                continue
            if dst == "<root>":
                if src != "<root>" and names != ["__version__"]:
                    bad.append(f"{path.relative_to(pkg.parent)}:{line} imports the root API "
                               f"{names}")
                continue
            if src == "<root>":
                continue                      # the lazy public API may import anything
            if dst not in levels or src not in levels or levels[dst] >= levels[src]:
                bad.append(f"{path.relative_to(pkg.parent)}:{line}: {src} (level "
                           f"{levels.get(src)}) imports {dst} (level {levels.get(dst)})")
    return bad


def test_every_package_is_in_the_layer_table():
    levels = layer_table()
    pkgs = {_package_of(p) for p in PKG.rglob("*.py")} - {"<root>"}
    assert pkgs <= set(levels), f"not in docs/ARCHITECTURE.md: {sorted(pkgs - set(levels))}"


def test_imports_follow_the_layering():
    bad = violations()
    assert not bad, "imports against docs/ARCHITECTURE.md:\n" + "\n".join(bad)


def test_the_check_catches_wrong_imports(tmp_path):
    """The checker itself, on a fake tree: an upward import (also inside a function), a
    sideways one and a use of the root API are reported; a downward one is not."""
    pkg = tmp_path / "densrefine"
    for sub in ("grid", "refine", "scoring", "xtal"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "grid" / "x.py").write_text("def f():\n    from ..refine import fit\n")
    (pkg / "scoring" / "y.py").write_text("from densrefine.ml import train\nfrom .. import fit\n")
    (pkg / "xtal" / "z.py").write_text("from ..grid import x\nfrom .. import __version__\n")
    bad = violations(pkg)
    assert len(bad) == 3, bad
    assert any("grid (level 1) imports refine" in b for b in bad)
    assert any("scoring (level 5) imports ml (level 5)" in b for b in bad)
    assert any("root API ['fit']" in b for b in bad)


GRID_HELPERS = ("fft_size", "fft_frame", "reciprocal_s2", "crop_spectrum", "fourier_resample",
                "sub_box", "box_around", "box_cell", "box_map", "rebox_periodic", "inside",
                "bounding_corners", "good_size", "fft_good_size", "xyz_to_index",
                "index_to_xyz", "periodic_box", "take_periodic", "dft_phases")


def test_grid_helpers_live_in_grid_only():
    """No grid helper is defined outside grid/ (GridFrame's own transforms in types.py and
    Grid's delegates are the exception), and no other FFT-size rule is used."""
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if rel.parts[0] == "grid":
            continue
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef) and node.name in GRID_HELPERS \
                    and rel.parts != ("types.py",):
                bad.append(f"{rel}:{node.lineno} defines {node.name}")
        if "next_fast_len" in text:
            bad.append(f"{rel} uses scipy's next_fast_len (the FFT-size rule is grid.fft_size)")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("tool", ["perturb"])
def test_library_does_not_import_the_benchmark_tool(tool):
    users = [f"{p.relative_to(ROOT)}:{line}" for p in PKG.rglob("*.py")
             if _package_of(p) not in (tool, "<root>") for dst, _, line in imports_of(p)
             if dst == tool]
    assert not users, users
