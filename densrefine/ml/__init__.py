"""Data pipeline for learned deformation densities (issue 6).

`fragments` cuts small QM fragments from real models, `qm` runs PySCF single points
(optional dependency), `fitting` fits Δρ = ρ_DFT − ρ_IAM onto atom-centred Gaussian
bases (`densrefine.density.ml_basis`), `evaluate` scores a predicted Δρ (density NMAE,
blurred-potential R), `generate` drives it all and writes ``ml_data/``.
"""
