"""The bad-input corpus: every way a user can get an input wrong, built in a temp folder
from the bundled example and the small real entries, with what the CLI must answer.

Each `Case` names a command line (``{model}``, ``{map}``, ``{mtz}``, ``{bad}``, ``{out}``
... are files of the case's folder, made by ``setup``) and the expected exit code:

* 2 (a refusal): stderr is exactly ONE line ``densrefine CMD: error: ...`` naming the
  file or option (``names``) and a fix (text after ``; ``); nothing in the folder
  changes (hashes) and no file appears (refused runs leave nothing behind).
* 0 (accepted, with a warning): ``warns`` must appear in a ``warning: ...`` line, and
  in the JSON ``"warnings"`` list when the command wrote one.

`tests/regression/test_bad_input_corpus.py` runs them through the real CLI in a
subprocess; ``python3 -m tests.regression.corpus`` prints the table of
docs/bad_input.md from live runs.
"""
from __future__ import annotations

import gzip
import os
import shutil
import struct
from dataclasses import dataclass, field

import numpy as np

from tests.conftest import ROOT, data_dir

EX = ROOT / "example_maps"


@dataclass
class Case:
    id: str
    what: str
    argv: list
    setup: object = None              # callable(folder) preparing the bad input(s)
    rc: int = 2
    names: tuple = ()                 # substrings the one-line message must contain
    warns: tuple = ()                 # rc 0: substrings of a "warning:" line
    needs: tuple = ()                 # shared data files the case uses
    slow: bool = False
    json: str | None = None           # rc 0: a JSON output whose "warnings" must match
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------- base inputs
def base(folder) -> None:
    """The good inputs every case starts from (copied; the originals are never used)."""
    shutil.copy(EX / "helix_start.pdb", folder / "model.pdb")
    shutil.copy(EX / "helix_3A.mrc", folder / "map.mrc")
    d = data_dir() / "5e5z"
    if (d / "5e5z.pdb.gz").exists():
        shutil.copy(d / "5e5z.pdb.gz", folder / "xmodel.pdb.gz")
        shutil.copy(d / "5e5z.mtz.gz", folder / "data.mtz.gz")


def _pdb_lines(folder, name="model.pdb"):
    return (folder / name).read_text().splitlines()


def _write_pdb(folder, name, fn):
    out = []
    for i, line in enumerate(_pdb_lines(folder)):
        if line.startswith(("ATOM", "HETATM")):
            line = fn(i, line)
            if line is None:
                continue
        out.append(line)
    (folder / name).write_text("\n".join(out) + "\n")


def _set_cols(line, start, end, value):
    return line[:start] + value.rjust(end - start)[: end - start] + line[end:]


def _map_bytes(folder):
    return bytearray((folder / "map.mrc").read_bytes())


def _put_word(buf, word, fmt, value):
    struct.pack_into("<" + fmt, buf, 4 * word, value)


def _mk(name, data):
    def setup(folder):
        p = folder / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return setup


def _map_edit(name, fn):
    def setup(folder):
        buf = _map_bytes(folder)
        fn(buf)
        (folder / name).write_bytes(bytes(buf))
    return setup


def _map_values(name, fn, voxel=None, nstart=None):
    def setup(folder):
        import mrcfile

        with mrcfile.open(folder / "map.mrc") as m:
            data = m.data.copy()
            vs = m.voxel_size
            hdr = m.header.copy()
        data = fn(data)
        with mrcfile.new(folder / name, overwrite=True) as m:
            m.set_data(np.ascontiguousarray(data, np.float32))
            m.voxel_size = voxel or vs
            m.header.nxstart, m.header.nystart, m.header.nzstart = nstart or (
                hdr.nxstart, hdr.nystart, hdr.nzstart)
    return setup


def _fifo(name):
    def setup(folder):
        os.mkfifo(folder / name)
    return setup


def _dir(name):
    def setup(folder):
        (folder / name).mkdir(parents=True)
    return setup


def _cif_model(folder, name="model.cif"):
    import gemmi

    st = gemmi.read_structure(str(folder / "model.pdb"))
    st.setup_entities()
    doc = st.make_mmcif_document()
    doc.write_file(str(folder / name))
    return folder / name


def _cif_edit(name, fn):
    def setup(folder):
        import gemmi

        src = _cif_model(folder, "tmp_model.cif")
        doc = gemmi.cif.read(str(src))
        fn(doc[0])
        doc.write_file(str(folder / name))
        src.unlink()
    return setup


def _drop_cartn_z(block):
    table = block.find_mmcif_category("_atom_site.")
    table.remove_column("Cartn_z") if hasattr(table, "remove_column") else None
    if "_atom_site.Cartn_z" in list(table.tags):
        loop = block.find_loop("_atom_site.Cartn_z").get_loop()
        loop.remove_column("_atom_site.Cartn_z")


def _unknown_x(block):
    col = block.find_loop("_atom_site.Cartn_x")
    for i in range(len(col)):
        col[i] = "?"


def _shift_model(name, dx):
    return lambda folder: _write_pdb(
        folder, name, lambda i, ln: _set_cols(ln, 30, 38, f"{float(ln[30:38]) + dx:8.3f}"))


def _occ(name, value, every=1):
    return lambda folder: _write_pdb(
        folder, name, lambda i, ln: _set_cols(ln, 54, 60, f"{value:6.2f}") if i % every == 0
        else ln)


def _bfac(name, value, every=1):
    return lambda folder: _write_pdb(
        folder, name, lambda i, ln: _set_cols(ln, 60, 66, f"{value:6.2f}") if i % every == 0
        else ln)


def _duplicate(name):
    def setup(folder):
        lines = _pdb_lines(folder)
        atoms = [ln for ln in lines if ln.startswith("ATOM")]
        out = [ln for ln in lines if not ln.startswith(("END", "MASTER"))] + atoms[:5] + ["END"]
        (folder / name).write_text("\n".join(out) + "\n")
    return setup


def _no_cryst1(name):
    def setup(folder):
        with gzip.open(folder / "xmodel.pdb.gz", "rt") as f:
            lines = [ln for ln in f.read().splitlines() if not ln.startswith("CRYST1")]
        (folder / name).write_text("\n".join(lines) + "\n")
    return setup


def _gz_truncated(src, name, keep=0.5):
    def setup(folder):
        raw = gzip.compress((folder / src).read_bytes())
        (folder / name).write_bytes(raw[: int(len(raw) * keep)])
    return setup


def _truncate(src, name, nbytes):
    def setup(folder):
        raw = (folder / src).read_bytes()
        (folder / name).write_bytes(raw[:nbytes] if nbytes > 0 else raw[:nbytes])
    return setup


def _gunzip(src, name):
    def setup(folder):
        with gzip.open(folder / src, "rb") as f:
            (folder / name).write_bytes(f.read())
    return setup


def _chain(*fns):
    def setup(folder):
        for fn in fns:
            fn(folder)
    return setup


def _symlink(target, name):
    def setup(folder):
        os.symlink(folder / target if target else folder / "nowhere", folder / name)
    return setup


def _hardlink(target, name):
    def setup(folder):
        os.link(folder / target, folder / name)
    return setup


def _copy(src, name):
    return lambda folder: shutil.copy(folder / src, folder / name)


def _text(name, text):
    return lambda folder: (folder / name).write_text(text)


LIGAND = """data_comp_list
loop_
_chem_comp.id
_chem_comp.three_letter_code
_chem_comp.name
_chem_comp.group
_chem_comp.number_atoms_all
_chem_comp.number_atoms_nh
_chem_comp.desc_level
LIG LIG 'nothing' non-polymer 1 1 .
"""

S = ["score", "{model}", "{map}", "-d", "3"]
F = ["fit", "{model}", "{map}", "-d", "3", "-o", "{out}/run", "--stages", "xyz", "--cycles", "1"]
X = ["rfactor", "{xmodel}", "{mtz}"]
X_NEEDS = ("5e5z/5e5z.pdb.gz", "5e5z/5e5z.mtz.gz")


def _s(bad_map=None, bad_model=None, *extra):
    return ["score", bad_model or "{model}", bad_map or "{map}", "-d", "3", *extra]


def _f(*extra, model="{model}", emap="{map}"):
    return ["fit", model, emap, "-d", "3", "-o", "{out}/run", "--stages", "xyz",
            "--cycles", "1", *extra]


def _sim(*extra, model="{model}"):
    return ["simulate", model, "-d", "3", *extra]


def _x(*extra, model="{xmodel}", data="{mtz}"):
    return ["rfactor", model, data, *extra]


def _hdr(word, fmt, value):
    return lambda buf: _put_word(buf, word, fmt, value)


CASES = [
    # --------------------------------------------------------------------- maps
    Case("map-missing", "map path does not exist", _s("{dir}/nope.mrc"), names=("nope.mrc",)),
    Case("map-directory", "map path is a folder", _s("{dir}/adir.mrc"), _dir("adir.mrc"),
         names=("adir.mrc", "directory")),
    Case("map-empty", "0-byte map", _s("{dir}/empty.mrc"), _mk("empty.mrc", b""),
         names=("empty.mrc", "empty")),
    Case("map-random", "random bytes", _s("{dir}/rnd.mrc"),
         _mk("rnd.mrc", np.random.default_rng(1).bytes(5000)), names=("rnd.mrc",)),
    Case("map-truncated", "data block cut short", _s("{dir}/cut.mrc"),
         _truncate("map.mrc", "cut.mrc", -4000), names=("cut.mrc", "truncated")),
    Case("map-header-only", "1024-byte header, no data", _s("{dir}/hdr.mrc"),
         _truncate("map.mrc", "hdr.mrc", 1024), names=("hdr.mrc",)),
    Case("map-mode", "unsupported mode 5", _s("{dir}/mode.mrc"),
         _map_edit("mode.mrc", _hdr(3, "i", 5)), names=("mode.mrc", "mode")),
    Case("map-zero-nx", "NX = 0", _s("{dir}/nx0.mrc"), _map_edit("nx0.mrc", _hdr(0, "i", 0)),
         names=("nx0.mrc",)),
    Case("map-negative-ny", "NY < 0", _s("{dir}/ny.mrc"), _map_edit("ny.mrc", _hdr(1, "i", -5)),
         names=("ny.mrc",)),
    Case("map-no-map-word", "'MAP ' identifier missing", _s("{dir}/noword.mrc"),
         _map_edit("noword.mrc", lambda b: b.__setitem__(slice(208, 212), b"XXXX")),
         names=("noword.mrc", "MAP")),
    Case("map-zero-cell", "cell edge 0", _s("{dir}/cell0.mrc"),
         _map_edit("cell0.mrc", _hdr(10, "f", 0.0)), names=("cell0.mrc", "cell")),
    Case("map-nan", "a NaN voxel", _s("{dir}/nan.mrc"),
         _map_values("nan.mrc", lambda d: np.where(np.arange(d.size).reshape(d.shape) == 7,
                                                   np.nan, d)), names=("nan.mrc", "NaN")),
    Case("map-inf", "an infinite voxel", _s("{dir}/inf.mrc"),
         _map_values("inf.mrc", lambda d: np.where(np.arange(d.size).reshape(d.shape) == 7,
                                                   np.inf, d)), names=("inf.mrc", "Inf")),
    Case("map-flat", "every voxel the same value", _s("{dir}/flat.mrc"),
         _map_values("flat.mrc", lambda d: np.zeros_like(d)), names=("flat.mrc", "flat")),
    Case("map-coarse", "20 Å voxels: empty molecular mask (cc_mask was null)",
         _s("{dir}/coarse.mrc"), _map_values("coarse.mrc", lambda d: d[::20, ::20, ::20] + 0,
                                              voxel=20.0, nstart=(1, 1, 1)),
         names=("coarse.mrc", "voxel")),
    Case("map-is-pdb", "a PDB file named .mrc", _s("{dir}/text.mrc"),
         _copy("model.pdb", "text.mrc"), names=("text.mrc",)),
    Case("map-gz-garbage", ".mrc.gz that is not gzip", _s("{dir}/bad.mrc.gz"),
         _mk("bad.mrc.gz", b"not gzip at all" * 100), names=("bad.mrc.gz",)),
    Case("map-gz-truncated", "gzip stream cut in half", _s("{dir}/half.mrc.gz"),
         _gz_truncated("map.mrc", "half.mrc.gz"), names=("half.mrc.gz",)),
    Case("map-fifo", "named pipe (process substitution)", _s("{dir}/pipe.mrc"),
         _fifo("pipe.mrc"), names=("pipe.mrc", "pipe")),
    Case("map-broken-link", "symbolic link to nothing", _s("{dir}/link.mrc"),
         _symlink(None, "link.mrc"), names=("link.mrc", "not found")),
    Case("map-model-swapped", "MAP and MODEL swapped", ["score", "{map}", "{model}", "-d", "3"],
         names=("map.mrc", "swap")),
    Case("map-is-model", "the model given as MAP", _s("{model}"), names=("model.pdb",)),
    Case("map-is-mtz", "reflections given as MAP to score", _s("{mtz}"), needs=X_NEEDS,
         names=("data.mtz.gz",)),
    # ------------------------------------------------------------------- models
    Case("model-missing", "model path does not exist", _s(None, "{dir}/nope.pdb"),
         names=("nope.pdb",)),
    Case("model-directory", "model path is a folder", _s(None, "{dir}/m.pdb"), _dir("m.pdb"),
         names=("m.pdb", "directory")),
    Case("model-empty", "0-byte model", _s(None, "{dir}/e.pdb"), _mk("e.pdb", b""),
         names=("e.pdb", "empty")),
    Case("model-binary", "random bytes named .pdb", _s(None, "{dir}/b.pdb"),
         _mk("b.pdb", np.random.default_rng(2).bytes(3000)), names=("b.pdb",)),
    Case("model-no-atoms", "PDB with REMARKs only", _s(None, "{dir}/r.pdb"),
         _text("r.pdb", "REMARK nothing\nEND\n"), names=("r.pdb", "no atoms")),
    Case("model-empty-cif", "mmCIF with only data_x (was vector::_M_range_check)",
         _s(None, "{dir}/e.cif"), _text("e.cif", "data_x\n"), names=("e.cif",)),
    Case("model-cif-no-z", "mmCIF without _atom_site.Cartn_z", _s(None, "{dir}/noz.cif"),
         _cif_edit("noz.cif", _drop_cartn_z), names=("noz.cif", "Cartn_z")),
    Case("model-cif-unknown-x", "mmCIF with Cartn_x '?' (was a nan origin hint)",
         _s(None, "{dir}/qx.cif"), _cif_edit("qx.cif", _unknown_x),
         names=("qx.cif", "undefined coordinates")),
    Case("model-gz-truncated", ".pdb.gz cut in half", _s(None, "{dir}/half.pdb.gz"),
         _gz_truncated("model.pdb", "half.pdb.gz"), names=("half.pdb.gz",)),
    Case("model-gz-garbage", ".cif.gz that is not gzip", _s(None, "{dir}/g.cif.gz"),
         _mk("g.cif.gz", b"plain text, not gzip\n" * 20), names=("g.cif.gz",)),
    Case("model-is-mtz", "reflections given as MODEL", _s(None, "{mtz}"), needs=X_NEEDS,
         names=("data.mtz.gz",)),
    Case("model-is-sf-cif", "structure factors (_refln) given as MODEL",
         _s(None, "{dir}/sf.cif"), _text("sf.cif", "data_r\nloop_\n_refln.index_h\n"
                                                   "_refln.index_k\n_refln.index_l\n"
                                                   "_refln.F_meas_au\n1 0 0 10.0\n"),
         names=("sf.cif", "structure-factor")),
    Case("model-zero-occupancy", "every occupancy 0 (was reported against the map)",
         _s(None, "{dir}/occ0.pdb"), _occ("occ0.pdb", 0.0), names=("occ0.pdb", "occupancy")),
    Case("model-negative-occupancy", "every occupancy negative",
         _s(None, "{dir}/occn.pdb"), _occ("occn.pdb", -1.0), names=("occn.pdb", "occupancy")),
    Case("model-outside", "model 500 Å away from the map box", _s(None, "{dir}/far.pdb"),
         _shift_model("far.pdb", 500.0), names=("far.pdb", "origin")),
    Case("model-fifo", "named pipe as MODEL", _s(None, "{dir}/p.pdb"), _fifo("p.pdb"),
         names=("p.pdb", "pipe")),
    # ----------------------------------------------------------- score options
    Case("res-zero", "-d 0", S[:-1] + ["0"], names=("resolution",)),
    Case("res-negative", "-d -2", S[:-1] + ["-2"], names=("resolution",)),
    Case("res-huge", "-d 1000", S[:-1] + ["1000"], names=("resolution",)),
    Case("res-below-fit-range", "-d 0.3 (fit's range is 0.5-50 Å; score now the same)",
         S[:-1] + ["0.3"], names=("resolution", "0.5")),
    Case("res-nan", "-d nan", S[:-1] + ["nan"], names=("resolution",)),
    Case("res-not-number", "-d abc", S[:-1] + ["abc"], names=("resolution", "abc")),
    Case("table-unknown", "--table neutron", S + ["--table", "neutron"], names=("table",)),
    Case("device-cuda", "--device cuda without CUDA", S + ["--device", "cuda"],
         names=("cuda",), extra={"no_cuda": True}),
    Case("device-bogus", "--device tpu", S + ["--device", "tpu"], names=("tpu",)),
    Case("option-unknown", "an unknown flag", S + ["--frobnicate"], names=("frobnicate",)),
    Case("res-missing-value", "-d without a value", ["score", "{model}", "{map}", "-d"],
         names=("-d",)),
    # ------------------------------------------------------------- output paths
    Case("out-log-is-map", "score --json W/X.json with the map at W/X.log (was destroyed)",
         _s("{dir}/X.log", None, "--json", "{dir}/X.json"), _copy("map.mrc", "X.log"),
         names=("X.log", "overwrite")),
    Case("out-json-is-model", "--json names the model", S + ["--json", "{model}"],
         names=("model.pdb", "overwrite")),
    Case("out-json-is-map", "--json names the map", S + ["--json", "{map}"],
         names=("map.mrc", "overwrite")),
    Case("out-json-dir", "--json is an existing folder", S + ["--json", "{dir}/j.json"],
         _dir("j.json"), names=("j.json", "directory")),
    Case("out-parent-file", "--json inside a path that is a file",
         S + ["--json", "{model}/x.json"], names=("model.pdb",)),
    Case("out-log-symlink-to-model", "derived log is a symlink to the model",
         S + ["--json", "{dir}/s.json"], _symlink("model.pdb", "s.log"),
         names=("s.log", "overwrite")),
    Case("out-log-hardlink-to-map", "derived log is a hard link of the map",
         S + ["--json", "{dir}/h.json"], _hardlink("map.mrc", "h.log"),
         names=("h.log", "overwrite")),
    Case("out-json-fifo", "--json names a named pipe", S + ["--json", "{dir}/fifo.json"],
         _fifo("fifo.json"), names=("fifo.json", "regular")),
    Case("out-json-equals-log", "--json X.log makes the log and JSON one file",
         S + ["--json", "{dir}/same.log"], names=("same.log",)),
    Case("fit-stats-dir", "PREFIX_stats.json exists as a folder (was IsADirectoryError)",
         _f(), _dir("out/run_stats.json"), names=("run_stats.json", "directory")),
    Case("fit-report-dir", "PREFIX_report.html exists as a folder (was IsADirectoryError)",
         _f(), _dir("out/run_report.html"), names=("run_report.html", "directory")),
    Case("fit-prefix-folder", "-o DIR/ (a folder, not a prefix)",
         ["fit", "{model}", "{map}", "-d", "3", "-o", "{dir}/outdir/"],
         names=("outdir", "prefix")),
    Case("fit-prefix-is-model", "PREFIX.pdb would be the input model",
         ["fit", "{model}", "{map}", "-d", "3", "-o", "{dir}/model"],
         names=("model.pdb", "overwrite")),
    Case("fit-log-is-map", "PREFIX.log would be the map (map named run.log)",
         ["fit", "{model}", "{dir}/run.log", "-d", "3", "-o", "{dir}/run"],
         _copy("map.mrc", "run.log"), names=("run.log", "overwrite")),
    Case("fit-config-is-output", "PREFIX_config.yaml is the --config input",
         _f("--config", "{out}/run_config.yaml"),
         _chain(_dir("out"), _text("out/run_config.yaml", "cycles: 1\n")),
         names=("run_config.yaml", "overwrite")),
    Case("sim-out-is-like", "simulate -o equal to --like", _sim("--like", "{map}", "-o", "{map}"),
         names=("map.mrc", "overwrite")),
    Case("sim-out-suffix", "simulate -o out.txt", _sim("--spacing", "1", "-o", "{dir}/o.txt"),
         names=("o.txt", "suffix")),
    Case("sim-log-is-model", "simulate's derived log would be the model (model named o.log)",
         _sim("--spacing", "1", "-o", "{dir}/o.mrc", model="{dir}/o.log"),
         _copy("model.pdb", "o.log"), names=("o.log", "overwrite")),
    Case("rfactor-log-is-model", "rfactor --json whose log is the model",
         _x("--json", "{dir}/xm.json", model="{dir}/xm.log"),
         _gunzip("xmodel.pdb.gz", "xm.log"), needs=X_NEEDS, names=("xm.log", "overwrite")),
    # --------------------------------------------------------------- fit options
    Case("fit-select-none", "--select matches no atom", _f("--select", "Z/1-3"),
         names=("--select", "Z/1-3")),
    Case("fit-select-syntax", "--select with bad syntax", _f("--select", "A/x-y"),
         names=("select",)),
    Case("fit-stages", "--stages foo", _f()[:-4] + ["--stages", "foo"], names=("stages",)),
    Case("fit-cycles", "--cycles -1", _f()[:-2] + ["--cycles", "-1"], names=("cycles",)),
    Case("fit-weight", "--weight -5", _f("--weight", "-5"), names=("weight",)),
    Case("fit-bond-target", "--target-bond-rmsd 1", _f("--target-bond-rmsd", "1"),
         names=("target-bond-rmsd",)),
    Case("fit-angle-max", "--max-angle-rmsd 50", _f("--max-angle-rmsd", "50"),
         names=("max-angle-rmsd",)),
    Case("fit-res", "fit -d 0.2", ["fit", "{model}", "{map}", "-d", "0.2", "-o", "{out}/run"],
         names=("resolution",)),
    Case("config-missing", "--config file missing", _f("--config", "{dir}/none.yaml"),
         names=("none.yaml",)),
    Case("config-syntax", "--config not YAML", _f("--config", "{dir}/bad.yaml"),
         _text("bad.yaml", "cycles: [1, 2\n  :: }\n"), names=("bad.yaml",)),
    Case("config-type", "--config with xyz_iterations: many (key named, file was not)",
         _f("--config", "{dir}/t.yaml"), _text("t.yaml", "xyz_iterations: many\n"),
         names=("t.yaml", "xyz_iterations")),
    Case("config-unknown-key", "--config with an unknown key", _f("--config", "{dir}/k.yaml"),
         _text("k.yaml", "cyclez: 3\n"), names=("k.yaml", "cyclez")),
    Case("config-directory", "--config is a folder", _f("--config", "{dir}/cfg"), _dir("cfg"),
         names=("cfg", "directory")),
    Case("ligand-empty", "--ligand 0-byte file (was accepted silently)",
         _f("--ligand", "{dir}/lig.cif"), _mk("lig.cif", b""), names=("lig.cif",)),
    Case("ligand-no-dictionary", "--ligand cif without a data_comp_XXX block",
         _f("--ligand", "{dir}/lig.cif"), _text("lig.cif", LIGAND), names=("lig.cif",)),
    Case("ligand-missing", "--ligand file missing", _f("--ligand", "{dir}/none.cif"),
         names=("none.cif",)),
    Case("monlib-missing", "--monlib folder missing", _f("--monlib", "{dir}/nolib"),
         names=("nolib",)),
    Case("fit-unknown-residues-mode", "--unknown-residues maybe",
         _f("--unknown-residues", "maybe"), names=("unknown-residues",)),
    Case("fit-swapped", "fit MAP MODEL", ["fit", "{map}", "{model}", "-o", "{out}/run"],
         names=("map.mrc", "swap")),
    Case("fit-mtz-bad-labin", "fit against MTZ with --labin of missing columns",
         ["fit", "{xmodel}", "{mtz}", "-o", "{out}/run", "--labin", "FOO,SIGFOO"],
         needs=X_NEEDS, names=("data.mtz.gz", "FOO")),
    # ---------------------------------------------------------------- simulate
    Case("sim-box-huge", "--box 4000 4000 4000 (tried to allocate 238 GiB)",
         _sim("--box", "4000", "4000", "4000", "--spacing", "1", "-o", "{out}/s.mrc"),
         names=("--box", "GiB")),
    Case("sim-spacing-zero", "--spacing 0 (said '--like: no output grid given')",
         _sim("--spacing", "0", "-o", "{out}/s.mrc"), names=("--spacing",)),
    Case("sim-spacing-negative", "--spacing -1", _sim("--spacing", "-1", "-o", "{out}/s.mrc"),
         names=("--spacing",)),
    Case("sim-spacing-tiny", "--spacing 0.001 (a grid larger than memory)",
         _sim("--spacing", "0.001", "-o", "{out}/s.mrc"), names=("--spacing", "GiB")),
    Case("sim-like-and-box", "--like with --box",
         _sim("--like", "{map}", "--box", "8", "8", "8", "-o", "{out}/s.mrc"),
         names=("--like",)),
    Case("sim-no-grid", "neither --like nor --spacing/--box", _sim("-o", "{out}/s.mrc"),
         names=("--like",)),
    Case("sim-box-small", "--box 1 1 1", _sim("--box", "1", "1", "1", "--spacing", "1", "-o",
                                               "{out}/s.mrc"), names=("--box",)),
    Case("sim-margin", "--margin -1", _sim("--spacing", "1", "--margin", "-1", "-o",
                                           "{out}/s.mrc"), names=("--margin",)),
    Case("sim-res", "simulate -d 0", ["simulate", "{model}", "-d", "0", "--spacing", "1", "-o",
                                      "{out}/s.mrc"], names=("resolution",)),
    Case("sim-like-missing", "--like map missing",
         _sim("--like", "{dir}/none.mrc", "-o", "{out}/s.mrc"), names=("none.mrc",)),
    Case("sim-method", "--method magic", _sim("--spacing", "1", "--method", "magic", "-o",
                                              "{out}/s.mrc"), names=("method",)),
    # ----------------------------------------------------------------- rfactor
    Case("data-missing", "reflection file missing", _x(data="{dir}/none.mtz"),
         needs=X_NEEDS, names=("none.mtz",)),
    Case("data-garbage", "random bytes named .mtz", _x(data="{dir}/g.mtz"),
         _mk("g.mtz", np.random.default_rng(3).bytes(4000)), needs=X_NEEDS, names=("g.mtz",)),
    Case("data-truncated", "MTZ cut in half", _x(data="{dir}/half.mtz"),
         _chain(_gunzip("data.mtz.gz", "full.mtz"), _truncate("full.mtz", "half.mtz", 3000)),
         needs=X_NEEDS, names=("half.mtz",)),
    Case("data-is-map", "a map given as DATA", _x(data="{map}"), needs=X_NEEDS,
         names=("map.mrc",)),
    Case("data-swapped", "rfactor DATA MODEL", ["rfactor", "{mtz}", "{xmodel}"],
         needs=X_NEEDS, names=("data.mtz.gz", "swap")),
    Case("data-cell-mismatch", "the helix model against 5E5Z data", _x(model="{model}"),
         needs=X_NEEDS, names=("model.pdb", "cell")),
    Case("data-labin", "--labin with missing columns", _x("--labin", "FOO,SIGFOO"),
         needs=X_NEEDS, names=("data.mtz.gz", "FOO")),
    Case("data-dmin-zero", "--d-min 0", _x("--d-min", "0"), needs=X_NEEDS, names=("--d-min",)),
    Case("data-dmin-outside", "--d-min 50 (beyond the data)", _x("--d-min", "50"),
         needs=X_NEEDS, names=("data.mtz.gz", "d_min")),
    Case("data-cif-no-refln", "mmCIF with no _refln loop", _x(data="{dir}/x.cif"),
         _text("x.cif", "data_x\n_cell.length_a 10\n"), needs=X_NEEDS, names=("x.cif",)),
    Case("data-fifo", "named pipe as DATA", _x(data="{dir}/p.mtz"), _fifo("p.mtz"),
         needs=X_NEEDS, names=("p.mtz", "pipe")),
    # -------------------------------------------------------------------- info
    Case("info-missing", "info on a missing file", ["info", "{dir}/none.mrc"],
         names=("none.mrc",)),
    Case("info-directory", "info on a folder", ["info", "{dir}/d"], _dir("d"), names=("d",)),
    Case("info-fifo", "info on a named pipe (hung forever)", ["info", "{dir}/p.pdb"],
         _fifo("p.pdb"), names=("p.pdb", "pipe")),
    Case("info-empty", "info on a 0-byte file", ["info", "{dir}/e.cif"], _mk("e.cif", b""),
         names=("e.cif", "empty")),
    Case("info-garbage", "info on random bytes", ["info", "{dir}/g.bin"],
         _mk("g.bin", np.random.default_rng(4).bytes(2000)), names=("g.bin",)),
    # --------------------------------------------- accepted, with a warning (exit 0)
    Case("warn-nyquist", "-d 0.5 on a 1 Å map (finer than Nyquist; was silent)",
         S[:-1] + ["0.5", "--json", "{out}/s.json"], rc=0, warns=("Nyquist",),
         json="{out}/s.json"),
    Case("warn-zero-occupancy", "some atoms with occupancy 0",
         _s(None, "{dir}/occ.pdb", "--json", "{out}/s.json"), _occ("occ.pdb", 0.0, every=7),
         rc=0, warns=("occupancy", "occ.pdb"), json="{out}/s.json"),
    Case("warn-negative-b", "some atoms with negative B",
         _s(None, "{dir}/b.pdb", "--json", "{out}/s.json"), _bfac("b.pdb", -5.0, every=9),
         rc=0, warns=("B-factor", "negative"), json="{out}/s.json"),
    Case("warn-duplicates", "five atoms duplicated",
         _s(None, "{dir}/dup.pdb", "--json", "{out}/s.json"), _duplicate("dup.pdb"), rc=0,
         warns=("duplicate",), json="{out}/s.json"),
    Case("warn-wrong-map", "model 9 Å off its density (CC_mask 0.03 was silent)",
         _s(None, "{dir}/off.pdb", "--json", "{out}/s.json"), _shift_model("off.pdb", 9.0),
         rc=0, warns=("CC_mask",), json="{out}/s.json"),
    Case("warn-mostly-outside", "model mostly outside the map box",
         _s(None, "{dir}/half.pdb", "--json", "{out}/s.json"), _shift_model("half.pdb", 30.0),
         rc=0, warns=("mostly outside",), json="{out}/s.json"),
    Case("accept-no-cryst1", "model without CRYST1 against an MTZ (was refused)",
         _x("--json", "{out}/r.json", model="{dir}/nocryst.pdb"), _no_cryst1("nocryst.pdb"),
         rc=0, warns=("no unit cell", "data.mtz.gz"), needs=X_NEEDS, json="{out}/r.json"),
    Case("accept-info-mtz", "info on an MTZ (said 'binary file, not a PDB or mmCIF model')",
         ["info", "{mtz}"], rc=0, needs=X_NEEDS, extra={"stdout": ("P 1 21 1", "FREE",
                                                                    "reflections")}),
]


def table(results) -> str:
    """Markdown table of the corpus: id, what, exit code, the message (live runs)."""
    rows = ["| case | input | exit | what densrefine says (stderr) |", "|---|---|---|---|"]
    for case, rc, msg in results:
        msg = msg.replace("|", "\\|")
        rows.append(f"| `{case.id}` | {case.what} | {rc} | {msg} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # pragma: no cover - regenerates the table of docs/bad_input.md
    import sys
    import tempfile
    from pathlib import Path

    from tests.regression.test_bad_input_corpus import _subprocess_only, run_case

    out = []
    for case in CASES:
        with tempfile.TemporaryDirectory() as d:
            p = run_case(case, Path(d), "subprocess" if _subprocess_only(case) else "inproc")
            lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
            msg = lines[-1] if case.rc == 2 and lines else "; ".join(
                ln for ln in lines if ln.startswith("warning:"))[:300] or "(stdout report)"
            for prefix in (str(Path(d).resolve() / "in") + "/", str(Path(d) / "in") + "/"):
                msg = msg.replace(prefix, "")
            out.append((case, p.returncode, msg))
    sys.stdout.write(table(out))
