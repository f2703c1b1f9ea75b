"""Beyond one process: many jobs from a manifest, and one huge model in blocks, on Dask.

* `manifest`: the batch manifest (CSV or YAML list: model, data, resolution,
  half_map_2, name, options), checked row by row before anything runs.
* `cluster`: where work runs: an embedded ``LocalCluster`` sized to the machine, an
  existing scheduler, or a batch system through dask-jobqueue; per-worker thread limits.
* `jobs`: a job's key (hash of inputs, options and version), its staging folder and
  atomic publication, the record in ``OUTDIR/NAME/job.json``; what a worker runs.
* `run`: submit the jobs that are not finished, collect records, keep the summary.
* `summary`: per-job numbers and ``OUTDIR/summary.csv/.json/.html``.
* `partition`: refinement of one model in spatially compact blocks with a halo of
  fixed atoms, in parallel, with shifted partitions between passes.

The CLI (``densrefine batch``, ``densrefine fit --partition``) and the public API
(``dr.batch``, ``dr.fit(..., partition=...)``) sit on top. dask and distributed are
imported by this package's modules; ``import densrefine`` does not load them.
"""

TASKS = ("fit", "score", "rfactor")
"""The commands a batch job can run (``densrefine batch --task``)."""
