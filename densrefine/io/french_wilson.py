"""French–Wilson conversion of merged intensities to amplitudes.

Measured intensities I (with error σ) can be negative; amplitudes cannot. French & Wilson
(1978) replace √I by the posterior mean of the true amplitude F = √J given I, with a
Wilson prior on the true intensity J ≥ 0 and a Gaussian likelihood of I:

* acentric: p(J) = exp(−J/Σ)/Σ,
* centric:  p(J) = exp(−J/2Σ)/√(2πΣJ),

where Σ = ε·⟨I/ε⟩ is the expected intensity at the reflection's resolution (ε = epsilon
factor, the number of rotation operators that leave the index unchanged, centring
excluded as in cctbx). Both posteriors are truncated Gaussians in J (the centric one
times J^(−1/2)), so their moments have closed forms in parabolic-cylinder functions
D_ν (scipy ``pbdv``), with x = I/σ − σ/Σ (acentric) or I/σ − σ/(2Σ) (centric)::

    ∫_0^∞ t^k exp(−(t − x)²/2) dt = Γ(k+1) exp(−x²/4) D_{−(k+1)}(−x)

E[F] = √σ·E[t^½] and var F = σ·(E[t] − E[t^½]²) follow as ratios of those integrals.
For x > 35 the ratios overflow and the truncation is irrelevant; an asymptotic series
of the Gaussian moments is used instead (error < 1e-9). As in cctbx's ``french_wilson``
(and CCP4 truncate), reflections with x < −4 are rejected as outliers.

References
----------
French, S. & Wilson, K. (1978). Acta Cryst. A34, 517–525.
Wilson, A. J. C. (1949). Acta Cryst. 2, 318–321.
"""
from __future__ import annotations

import logging

import numpy as np
from scipy.special import gamma, pbdv

log = logging.getLogger("densrefine")

X_REJECT = -4.0     # cctbx french_wilson / truncate outlier limit on x
_X_ASYMPTOTIC = 35.0


def wilson_mean_intensity(i_obs, sig_i, s2, epsilon, n_bins=None) -> np.ndarray:
    """Expected intensity Σ = ε·⟨I/ε⟩ per reflection (Wilson prior).

    ⟨I/ε⟩ is averaged in resolution shells of equal count (in s² = 1/d²) and linearly
    interpolated in s² between shell centres. A shell mean is floored at half the mean
    σ/ε of the shell, since a mean intensity below the noise is not measurable.

    Parameters
    ----------
    i_obs, sig_i : ndarray, shape (n,), float64
        Intensities and their standard deviations.
    s2 : ndarray, shape (n,), float64
        1/d², Å⁻².
    epsilon : ndarray, shape (n,)
        Epsilon factors (centring excluded).
    n_bins : int, optional
        Number of shells; default min(20, max(1, n // 150)).

    Returns
    -------
    ndarray, shape (n,), float64
        Σ for each reflection (> 0).
    """
    n = len(i_obs)
    eps = np.asarray(epsilon, dtype=np.float64)
    if n_bins is None:
        n_bins = min(20, max(1, n // 150))
    order = np.argsort(s2)
    chunks = np.array_split(order, n_bins)
    centres, means = [], []
    for idx in chunks:
        m = float(np.mean(i_obs[idx] / eps[idx]))
        floor = 0.5 * float(np.mean(sig_i[idx] / eps[idx]))
        centres.append(float(np.mean(s2[idx])))
        means.append(max(m, floor, 1e-12))
    mean_i = np.interp(s2, centres, means) if n_bins > 1 else np.full(n, means[0])
    return eps * mean_i


def _gauss_moment(x, p):
    """E[t^p] for t ~ N(x, 1), asymptotic for large x (second order in 1/x²)."""
    c1 = p * (p - 1) / 2.0
    c2 = p * (p - 1) * (p - 2) * (p - 3) / 8.0
    return x**p * (1.0 + c1 / x**2 + c2 / x**4)


def _moments(x, centric):
    """Posterior E[t^½] and E[t] (σ units) for standardized x; see module docstring."""
    ef = np.empty_like(x)
    ej = np.empty_like(x)
    big = x > _X_ASYMPTOTIC
    small = ~big
    xs = x[small]
    cs = centric[small]
    d05, d1, d15 = (pbdv(v, -xs)[0] for v in (-0.5, -1.0, -1.5))
    # acentric: posterior ∝ exp(−(t−x)²/2) on t ≥ 0
    ef_a = gamma(1.5) * d15 / d1
    ej_a = xs + np.exp(-xs**2 / 4.0) / d1    # E[t] = x + φ(x)/Φ(x) = Γ(2)D_{−2}/D_{−1}
    # centric: posterior ∝ t^(−½) exp(−(t−x)²/2)
    ef_c = d1 / (gamma(0.5) * d05)
    ej_c = gamma(1.5) * d15 / (gamma(0.5) * d05)
    ef[small] = np.where(cs, ef_c, ef_a)
    ej[small] = np.where(cs, ej_c, ej_a)
    xb = x[big]
    cb = centric[big]
    inv_m = 1.0 / _gauss_moment(xb, -0.5)
    ef[big] = np.where(cb, inv_m, _gauss_moment(xb, 0.5))
    ej[big] = np.where(cb, _gauss_moment(xb, 0.5) * inv_m, xb)
    var = ej - ef**2
    # the difference cancels to nothing for very strong reflections: leading term 1/(4x)
    huge = x > 1e5
    var[huge] = 1.0 / (4.0 * x[huge])
    return ef, np.sqrt(np.clip(var, 0.0, None))


def french_wilson(i_obs, sig_i, mean_intensity, centric):
    """Posterior amplitudes E[F|I] and their standard deviations (French & Wilson 1978).

    Parameters
    ----------
    i_obs, sig_i : ndarray, shape (n,), float64
        Intensities and standard deviations (σ > 0).
    mean_intensity : ndarray, shape (n,), float64
        Wilson prior Σ = ε·⟨I/ε⟩ per reflection (see `wilson_mean_intensity`).
    centric : ndarray, shape (n,), bool
        Centric reflections.

    Returns
    -------
    f, sig_f : ndarray, shape (n,), float64
        Posterior mean amplitude and its standard deviation (NaN where rejected).
    ok : ndarray, shape (n,), bool
        False for outliers rejected with x < −4.

    Examples
    --------
    >>> import numpy as np
    >>> f, sf, ok = french_wilson(np.array([10000.0, -5.0]), np.array([10.0, 10.0]),
    ...                           np.array([1000.0, 1000.0]), np.array([False, False]))
    >>> round(float(f[0]), 2), bool(f[1] > 0)
    (100.0, True)
    """
    i_obs = np.asarray(i_obs, dtype=np.float64)
    sig_i = np.asarray(sig_i, dtype=np.float64)
    centric = np.asarray(centric, dtype=bool)
    mean_intensity = np.asarray(mean_intensity, dtype=np.float64)
    prior = np.where(centric, 2.0 * mean_intensity, mean_intensity)
    x = i_obs / sig_i - sig_i / prior
    ok = x >= X_REJECT
    f = np.full(len(x), np.nan)
    sf = np.full(len(x), np.nan)
    ef, sd = _moments(x[ok], centric[ok])
    root = np.sqrt(sig_i[ok])
    f[ok] = root * ef
    sf[ok] = root * sd
    return f, sf, ok


def amplitudes_from_intensities(i_obs, sig_i, hkl, cell, spacegroup):
    """French–Wilson amplitudes for merged intensities of one crystal.

    The Wilson prior Σ(d) = ε·⟨I/ε⟩ (resolution shells) and the centric flags come
    from the space group (gemmi ``GroupOps.epsilon_factor_without_centering_array``,
    ``centric_flag_array``).

    Parameters
    ----------
    i_obs, sig_i : ndarray, shape (n,), float64
        Intensities and standard deviations (σ > 0).
    hkl : ndarray, shape (n, 3), int
        Miller indices.
    cell : gemmi.UnitCell
        Unit cell (Å, degrees).
    spacegroup : gemmi.SpaceGroup
        Space group of the data.

    Returns
    -------
    f, sig_f : ndarray, shape (n,), float64
        Amplitudes and standard deviations (NaN where rejected).
    ok : ndarray, shape (n,), bool
        False for the outliers rejected (x < −4).
    """
    hkl = np.ascontiguousarray(hkl, dtype=np.int32)
    ops = spacegroup.operations()
    eps = np.asarray(ops.epsilon_factor_without_centering_array(hkl), dtype=np.float64)
    centric = np.asarray(ops.centric_flag_array(hkl), dtype=bool)
    s2 = 1.0 / np.asarray(cell.calculate_d_array(hkl), dtype=np.float64) ** 2
    sigma = wilson_mean_intensity(i_obs, sig_i, s2, eps)
    f, sf, ok = french_wilson(i_obs, sig_i, sigma, centric)
    log.info("French-Wilson (1978): amplitudes as posterior means from %d intensities "
             "(%d centric; Wilson prior in resolution shells), %d rejected with x < %g",
             len(f), int(centric.sum()), int((~ok).sum()), X_REJECT)
    return f, sf, ok
