"""`densrefine batch`: the manifest checks, job keys, job folders and cluster options.

No Dask cluster runs here (tests/regression/test_batch_cluster.py runs real ones): every
refusal must come before any work, as one line naming the row and the fix, exit 2, with
nothing written.
"""
from __future__ import annotations

import json
import os

import pytest

import densrefine as dr
from densrefine.build import ideal_peptide, with_cell_box
from densrefine.cli import main
from densrefine.cli.batch import check_options
from densrefine.distributed import jobs as jobs_mod
from densrefine.distributed.cluster import ClusterSpec, check_spec
from densrefine.distributed.manifest import read_manifest
from densrefine.errors import InputError
from densrefine.simulate import simulate


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A tiny model/map pair (and a second map) in a folder of their own."""
    d = tmp_path_factory.mktemp("batchin")
    m, _ = with_cell_box(ideal_peptide("AKE"), margin=5.0)
    dr.write_model(m, d / "pep.pdb")
    emap = simulate(m, resolution=3.0, spacing=1.0, margin=5.0, method="fourier", device="cpu")
    dr.write_map(emap, d / "pep.mrc")
    dr.write_map(emap.with_values(emap.values * 2), d / "pep2.mrc")
    return d


def _write(d, name, text):
    p = d / name
    p.write_text(text)
    return p


def test_csv_rows_paths_names_options(pair):
    m = _write(pair, "ok.csv", "model,data,resolution,options\n"
               "pep.pdb,pep.mrc,3.0,--stages xyz --cycles 1\n"
               "pep.pdb,pep2.mrc,,\n")
    jobs = read_manifest(m, "fit", check_options=check_options)
    assert [j.name for j in jobs] == ["pep_pep", "pep_pep2"]     # same model: + data stem
    assert jobs[0].model == str(pair / "pep.pdb") and os.path.isabs(jobs[1].data)
    assert jobs[0].resolution == 3.0 and jobs[1].resolution is None
    assert jobs[0].options == ("--stages", "xyz", "--cycles", "1") and jobs[1].options == ()


def test_yaml_list_with_option_list(pair):
    m = _write(pair, "ok.yaml", "- model: pep.pdb\n  data: pep.mrc\n  name: one\n"
               "  options: [--no-residues]\n- {model: pep.pdb, data: pep2.mrc, name: two}\n")
    jobs = read_manifest(m, "score", check_options=check_options)
    assert [(j.name, j.options) for j in jobs] == [("one", ("--no-residues",)), ("two", ())]


def test_option_files_are_made_absolute_and_hashed(pair):
    cfg = _write(pair, "c.yaml", "cycles: 1\n")
    m = _write(pair, "cfg.csv", "model,data,options\npep.pdb,pep.mrc,--config c.yaml\n")
    job = read_manifest(m, "fit", check_options=check_options)[0]
    assert job.options == ("--config", str(cfg))
    k1 = jobs_mod.job_key(job, "fit")
    cfg.write_text("cycles: 2\n")                     # same name, new content: a new key
    assert jobs_mod.job_key(job, "fit") != k1


@pytest.mark.parametrize("text, task, needle", [
    ("model,map\npep.pdb,pep.mrc\n", "fit", "unknown column 'map'"),
    ("model,resolution\npep.pdb,3\n", "fit", "missing column 'data'"),
    ("model,data\npep.pdb,nothere.mrc\n", "fit", "line 2: data file nothere.mrc does not exist"),
    ("model,data\npep.pdb,pep.mrc\n,pep.mrc\n", "fit", "line 3: the 'model' cell is empty"),
    ("model,data,options\npep.pdb,pep.mrc,--stagez xyz\n", "fit", "unrecognized arguments"),
    ("model,data,options\npep.pdb,pep.mrc,--cycles many\n", "fit", "invalid int value"),
    ("model,data,options\npep.pdb,pep.mrc,-o elsewhere\n", "fit", "option -o is set by batch"),
    ("model,data,options\npep.pdb,pep.mrc,--partition auto\n", "fit", "--partition"),
    ("model,data,name\npep.pdb,pep.mrc,a\npep.pdb,pep2.mrc,A\n", "fit",
     "line 3: its output name 'A' is also that of"),
    ("model,data,resolution\npep.pdb,pep.mrc,0.1\n", "fit", "resolution '0.1'"),
    ("model,data,name\npep.pdb,pep.mrc,../up\n", "fit", "not a usable folder name"),
    ("model,data\npep.pdb,pep.mrc\n", "rfactor", "is a map, and rfactor needs reflections"),
    ("model,data,half_map_2\npep.pdb,pep.mrc,pep2.mrc\n", "score", "only fit takes half maps"),
    ("model,data\n", "fit", "holds no job"),
])
def test_bad_manifest_one_line_naming_row(pair, text, task, needle):
    m = _write(pair, "bad.csv", text)
    with pytest.raises(InputError) as exc:
        read_manifest(m, task, check_options=check_options)
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg and msg.startswith(str(m)), msg


def test_cli_refusals_exit_2_before_anything_is_written(pair, tmp_path, capsys):
    m = _write(pair, "bad2.csv", "model,data,options\npep.pdb,pep.mrc,--stagez xyz\n")
    out = tmp_path / "out"
    rc = main(["batch", str(m), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "bad2.csv line 2" in err and "see densrefine fit --help" in err
    assert not out.exists()


def test_input_inside_a_job_folder_is_refused(pair, tmp_path, capsys):
    inner = tmp_path / "out" / "pep"
    inner.mkdir(parents=True)
    (inner / "pep.pdb").write_bytes((pair / "pep.pdb").read_bytes())
    m = _write(tmp_path, "m.csv", f"model,data\n{inner / 'pep.pdb'},{pair / 'pep.mrc'}\n")
    rc = main(["batch", str(m), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "lies inside" in err and (inner / "pep.pdb").exists()


def test_a_folder_that_is_not_a_job_folder_is_refused(pair, tmp_path, capsys):
    """OUTDIR/NAME holding the user's own files (no job.json) is never replaced."""
    mine = tmp_path / "out" / "pep"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    m = _write(tmp_path, "m2.csv", f"model,data\n{pair / 'pep.pdb'},{pair / 'pep.mrc'}\n")
    rc = main(["batch", str(m), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "not a batch job folder" in err, err
    assert "m2.csv line 2" in err and (mine / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path / "out")) == ["pep"]


def test_unreachable_scheduler_exit_2(pair, tmp_path, capsys, monkeypatch):
    import socket

    from densrefine.distributed import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 2)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                  # nothing listens there now
    m = _write(pair, "ok2.csv", "model,data\npep.pdb,pep.mrc\n")
    rc = main(["batch", str(m), "-o", str(tmp_path / "o"), "--scheduler",
               f"tcp://127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "no Dask scheduler answered" in err
    assert not (tmp_path / "o").exists()


def test_cluster_options_are_checked(monkeypatch, tmp_path):
    with pytest.raises(InputError, match="given together with --cluster"):
        check_spec(ClusterSpec(scheduler="tcp://x:1", cluster="slurm"))
    with pytest.raises(InputError, match="--workers"):
        check_spec(ClusterSpec(workers=0))
    with pytest.raises(InputError, match="without --cluster"):
        check_spec(ClusterSpec(config="x.yaml"))
    import builtins

    real = builtins.__import__

    def no_jobqueue(name, *a, **k):
        if name.startswith("dask_jobqueue"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_jobqueue)
    with pytest.raises(InputError, match=r"pip install 'densrefine\[jobqueue\]'"):
        check_spec(ClusterSpec(cluster="pbs"))


def test_jobqueue_config_reaches_the_job_script(tmp_path):
    """With dask-jobqueue installed: the YAML keyword arguments make the Slurm script."""
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue import SLURMCluster

    cfg = tmp_path / "slurm.yaml"
    cfg.write_text("cores: 4\nmemory: 8GB\nqueue: short\nwalltime: '01:00:00'\njobs: 3\n")
    kw = check_spec(ClusterSpec(cluster="slurm", config=str(cfg)))
    assert kw["jobs"] == 3
    kw.pop("jobs")
    with SLURMCluster(**kw) as cl:
        script = cl.job_script()
    assert "#SBATCH -p short" in script and "#SBATCH -t 01:00:00" in script


def test_done_record_needs_key_and_complete_outputs(pair, tmp_path):
    job = read_manifest(_write(pair, "one.csv", "model,data\npep.pdb,pep.mrc\n"))[0]
    key = jobs_mod.job_key(job, "score")
    folder = tmp_path / job.name
    folder.mkdir()
    outs = jobs_mod.outputs_of("score", job)
    for f in outs.values():
        (folder / f).write_text("{}")
    rec = {"status": "done", "key": key, "outputs": outs}
    (folder / jobs_mod.RECORD).write_text(json.dumps(rec))
    assert jobs_mod.done_record(tmp_path, job, key) is not None
    assert jobs_mod.done_record(tmp_path, job, "other-key") is None
    (folder / outs["json"]).unlink()                      # an output missing: redo it
    assert jobs_mod.done_record(tmp_path, job, key) is None


def test_publish_replaces_the_folder_whole(tmp_path):
    final, new = tmp_path / "job", tmp_path / ".staging" / "job.abc"
    final.mkdir()
    (final / "old.txt").write_text("old")
    new.mkdir(parents=True)
    (new / "new.txt").write_text("new")
    jobs_mod.publish(str(new), str(final))
    assert sorted(os.listdir(final)) == ["new.txt"] and not new.exists()
    assert not any(p.name.endswith(".old") for p in (tmp_path / ".staging").iterdir())


def test_run_job_records_a_failure_in_one_line(pair, tmp_path):
    """`run_job` with the real CLI entry point, in this process: a refused input."""
    bad = read_manifest(_write(pair, "r.csv", "model,data,resolution\npep.pdb,pep.mrc,49\n"),
                        "score")[0]                       # d larger than the map box
    rec = jobs_mod.run_job({"task": "score", "job": bad, "outdir": str(tmp_path),
                            "key": "k", "device": "cpu"}, main)
    assert rec["status"] == "failed" and "\n" not in rec["error"] and rec["error"]
    on_disk = json.loads((tmp_path / bad.name / jobs_mod.RECORD).read_text())
    assert on_disk["status"] == "failed" and on_disk["error"] == rec["error"]
    assert not os.listdir(tmp_path / ".staging")


def test_two_runs_sharing_outdir_keep_each_others_staging(tmp_path):
    """Each run stages in its own locked area: one run ending (or cleaning up after a
    dead run) never removes the area of a run that is still going."""
    staging = tmp_path / jobs_mod.STAGING
    dead = staging / "deadrun"                       # a run killed mid-job (lock free)
    (dead / "job.x1").mkdir(parents=True)
    (staging / "deadrun.lock").write_text("")
    older = staging / "job.abc"                      # the layout before run areas
    older.mkdir()
    with jobs_mod.staging_area(tmp_path) as first:
        job_a = os.path.join(first, "a.1")
        os.mkdir(job_a)
        with jobs_mod.staging_area(tmp_path) as second:
            assert second != first and os.path.isdir(second)
            os.mkdir(os.path.join(second, "b.1"))
            assert jobs_mod.clean_staging(tmp_path) == 2       # the dead ones only
            assert os.path.isdir(job_a) and os.path.isdir(os.path.join(second, "b.1"))
            assert not dead.exists() and not older.exists()
            assert not (staging / "deadrun.lock").exists()
        assert not os.path.exists(second) and os.path.isdir(job_a)  # first still going
    assert not staging.exists()                      # the last run out removes it


def test_run_job_stages_in_the_run_area(pair, tmp_path):
    """`run_job` makes its folder in ``spec["staging"]`` and counts attempts there."""
    job = read_manifest(_write(pair, "s.csv", "model,data,resolution\npep.pdb,pep.mrc,49\n"),
                        "score")[0]
    with jobs_mod.staging_area(tmp_path) as area:
        os.mkdir(os.path.join(area, f"{job.name}.killed"))     # an attempt a worker lost
        rec = jobs_mod.run_job({"task": "score", "job": job, "outdir": str(tmp_path),
                                "key": "k", "device": "cpu", "staging": area}, main)
        assert rec["attempts"] == 2
        assert os.listdir(area) == []               # the lost attempt and its own, gone
    assert (tmp_path / job.name / jobs_mod.RECORD).is_file()


def test_cluster_flags_are_the_same_in_batch_and_partitioned_fit():
    """`densrefine batch` and `densrefine fit --partition` take one set of cluster flags."""
    import argparse

    from densrefine.cli import _cluster, _partition
    from densrefine.cli import batch as batch_cli
    from densrefine.cli.batch import FORBIDDEN

    def actions(add):
        p = argparse.ArgumentParser()
        add(p)
        return {a.option_strings[0]: (a.help, a.default, a.type, a.choices)
                for a in p._actions if a.option_strings and a.option_strings[0] in
                _cluster.CLUSTER_FLAGS}

    def batch_args(p):
        batch_cli.add_args(p)

    b, f = actions(batch_args), actions(_partition.add_args)
    assert set(b) == set(f) == set(_cluster.CLUSTER_FLAGS) and b == f
    assert all(flag in FORBIDDEN for flag in _cluster.CLUSTER_FLAGS)


def test_partition_with_a_whole_model_option_is_an_input_error():
    """``dr.fit(partition=..., select=...)``: one clear InputError, not a TypeError."""
    for kw in ({"select": "A"}, {"half_maps": ("a.mrc", "b.mrc")}, {"labin": "FP,SIGFP"}):
        with pytest.raises(InputError) as e:
            dr.fit(None, "x.mrc", 3.0, partition="auto", **kw)
        key = next(iter(kw))
        assert str(e.value).startswith(f"{key}=: cannot be combined with partition=")
        assert "\n" not in str(e.value)
