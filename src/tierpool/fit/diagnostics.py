"""Vectorised convergence diagnostics: rank-normalised split R-hat, bulk ESS and tail ESS.

These reproduce ArviZ 0.23's ``az.rhat`` (default method "rank") and ``az.ess(method="bulk")`` /
``az.ess(method="tail")`` (Vehtari et al. 2021, "Rank-normalization, folding, and localization"),
to floating-point rounding. Why not call ArviZ: it loops in Python over every scalar quantity and
calls ``scipy.stats.rankdata`` per element, ~4-8 s per fit for the ~250-400 quantities of a
posterior with 4 x 4,000 draws, and the fit computed them twice (tables and gate). Here every
step is a numpy operation over a block of quantities at once: ranks from one argsort of the
pooled split draws (shared by all three diagnostics), normal scores from a table, autocovariances
only as far as Geyer's truncation needs them, and the truncation itself without a per-lag loop.

Input everywhere is an array ``x`` of shape ``(chain, draw, P)``; results have shape ``(P,)``.
Where ArviZ gives NaN (any NaN draw, fewer than 4 draws, R-hat with one chain, R-hat of a constant
quantity) so do these; a constant quantity's ESS is the number of draws, as in ArviZ.

Rounding differences are deliberate and tiny (observed ≤ ~2e-13 relative, the largest in the tail
ESS): ArviZ with numba installed computes variances with the one-pass formula E[x²] - E[x]², this
module with numpy's two-pass variance; autocovariances come from direct sums or differently padded
FFTs (see ``_ess_core``); sums run in a different order.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from scipy.fftpack import next_fast_len  # the FFT length ArviZ's autocov uses
from scipy.special import ndtri

DIAGNOSTICS = ("r_hat", "ess_bulk", "ess_tail")

_BLOM_C = 3 / 8  # Blom's offset in the rank back-transform, as ArviZ (_backtransform_ranks)
_TAIL_PROBS = (0.05, 0.95)  # az.ess(method="tail") default
_LAG_STAGES = (16, 256)  # autocovariance lags computed directly, then by a short FFT (_ess_core)
_BLOCK_ELEMENTS = 1 << 18  # quantities per block x draws: ~2 MB temporaries stay in cache (~1.4x faster than one big block)


def rhat(x: Any) -> np.ndarray:
    """Rank-normalised split R-hat, max of bulk and folded tail; ``az.rhat(method="rank")``."""
    return diagnose(x, ("r_hat",))["r_hat"]


def ess_bulk(x: Any) -> np.ndarray:
    """Bulk effective sample size (rank-normalised split chains); ``az.ess(method="bulk")``."""
    return diagnose(x, ("ess_bulk",))["ess_bulk"]


def ess_tail(x: Any) -> np.ndarray:
    """Tail ESS, min over the 5% and 95% quantile indicators; ``az.ess(method="tail")``."""
    return diagnose(x, ("ess_tail",))["ess_tail"]


def diagnose(x: Any, which: tuple[str, ...] = DIAGNOSTICS) -> dict[str, np.ndarray]:
    """All requested diagnostics of ``x`` ``(chain, draw, P)`` in one pass (shared sort).

    Returns:
        ``{name: array (P,)}`` for each name in ``which`` (subset of :data:`DIAGNOSTICS`).
    """
    unknown = set(which) - set(DIAGNOSTICS)
    if unknown:
        raise ValueError(f"unknown diagnostic(s) {sorted(unknown)}; valid: {list(DIAGNOSTICS)}")
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x must have shape (chain, draw, P); got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        # ArviZ promotes ints/bools to float64 in the first arithmetic step; floats keep their
        # dtype there (the median and the folding run in float32 for float32 draws)
        x = x.astype(np.float64)
    n_chain, n_draw, n_par = x.shape
    out = {name: np.full(n_par, np.nan) for name in which}
    # ArviZ's shape checks (not_valid): >= 4 draws always, >= 2 chains for R-hat
    if n_draw < 4 or n_chain < 1:
        return out
    block = max(1, _BLOCK_ELEMENTS // max(1, n_chain * n_draw))
    for lo in range(0, n_par, block):
        # (P, chain, draw): each quantity's draws contiguous, so sorts and FFTs run along rows
        part = np.ascontiguousarray(np.moveaxis(x[:, :, lo:lo + block], 2, 0))
        for name, vals in _diagnose_block(part, which).items():
            out[name][lo:lo + block] = vals
    if "r_hat" in out and n_chain < 2:
        out["r_hat"][:] = np.nan
    return out


def summarise(ds: Any, which: tuple[str, ...] = DIAGNOSTICS) -> dict[str, dict[str, np.ndarray]]:
    """Diagnostics of every variable of a posterior ``xarray.Dataset`` (dims chain, draw, ...).

    All variables are stacked into one ``(chain, draw, P)`` array (one per dtype, so each variable
    is diagnosed in its own precision as ArviZ would), diagnosed in one go and split back.

    Returns:
        ``{diagnostic: {variable: array}}``, each array shaped like the variable without its chain
        and draw dims (0-d for a scalar variable), in the order of ``ds.data_vars``; the same
        numbers as ``az.rhat(ds)[var].values`` etc.
    """
    groups: dict[np.dtype, list[tuple[str, np.ndarray]]] = {}
    for var in ds.data_vars:
        arr = np.asarray(ds[var].transpose("chain", "draw", ...).values)
        dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float64)
        groups.setdefault(dtype, []).append((str(var), arr))
    per_var: dict[str, dict[str, np.ndarray]] = {}
    for dtype, members in groups.items():
        n_chain, n_draw = members[0][1].shape[:2]
        flat = [a.reshape(n_chain, n_draw, int(np.prod(a.shape[2:], dtype=int))) for _, a in members]
        res = diagnose(np.concatenate(flat, axis=2).astype(dtype, copy=False), which)
        off = 0
        for (var, a), f in zip(members, flat):
            size = f.shape[2]
            per_var[var] = {name: res[name][off:off + size].reshape(a.shape[2:]) for name in which}
            off += size
    order = [str(v) for v in ds.data_vars]
    return {name: {var: per_var[var][name] for var in order} for name in which}


# ---------------------------------------------------------------------------------------------
# internals; ``a`` is one block ``(P, chain, draw)``


def _diagnose_block(a: np.ndarray, which: tuple[str, ...]) -> dict[str, np.ndarray]:
    n_par, n_chain, n_draw = a.shape
    half = n_draw // 2
    # split chains exactly as ArviZ's _split_chains: first halves of all chains, then last halves
    # (for an odd draw count the middle draw is dropped)
    split = _split(a, half)
    n_split = split.shape[1] * half
    flat = split.reshape(n_par, n_split)
    # a quantity with any NaN draw is NaN in ArviZ (not_valid) for every diagnostic
    invalid = np.isnan(a).any(axis=(1, 2))
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        order = _flat_argsort(flat)
        srt = flat.ravel()[order].reshape(n_par, n_split)
        z_bulk = None
        if "r_hat" in which or "ess_bulk" in which:
            z_bulk = _scatter(_z_sorted(srt), order).reshape(split.shape)
        if "r_hat" in which:
            bulk = _rhat_core(z_bulk)
            # folded: distance from the median of the pooled split draws (np.median arithmetic)
            mid = n_split // 2
            med = srt[:, mid] if n_split % 2 else (srt[:, mid - 1] + srt[:, mid]) / 2
            folded = np.abs(flat - med[:, None])
            f_order = _flat_argsort(folded)
            f_srt = folded.ravel()[f_order].reshape(n_par, n_split)
            tail = _rhat_core(_scatter(_z_sorted(f_srt), f_order).reshape(split.shape))
            # a NaN in the folded draws (median ±inf) makes ArviZ's tail R-hat NaN
            tail[np.isnan(f_srt[:, -1])] = np.nan  # NaN sorts last
            # Python's max(bulk, tail) as in ArviZ: tail only if strictly greater (NaN-aware)
            out["r_hat"] = np.where(tail > bulk, tail, bulk)
        if "ess_bulk" in which:
            out["ess_bulk"] = _ess_core(z_bulk)
        if "ess_tail" in which:
            # the quantiles are of the unsplit draws; they equal the split ones for an even count
            full_srt = srt if n_draw % 2 == 0 else np.sort(a.reshape(n_par, -1), axis=1)
            lo_q, hi_q = (_quantile_type7(full_srt, p) for p in _TAIL_PROBS)
            ess_lo = _ess_core(_split(a <= lo_q[:, None, None], half))
            ess_hi = _ess_core(_split(a <= hi_q[:, None, None], half))
            # Python's min(lo, hi) as in ArviZ
            out["ess_tail"] = np.where(ess_hi < ess_lo, ess_hi, ess_lo)
    for vals in out.values():
        vals[invalid] = np.nan
    return out


def _split(a: np.ndarray, half: int) -> np.ndarray:
    return np.concatenate([a[:, :, :half], a[:, :, a.shape[2] - half:]], axis=1)


def _flat_argsort(v: np.ndarray) -> np.ndarray:
    """Row-wise argsort of ``(P, N)`` as indices into ``v.ravel()`` (1-D fancy indexing is
    cheaper than take_along_axis/put_along_axis, and the index is reused for both)."""
    order = np.argsort(v, axis=1)
    order += (np.arange(v.shape[0]) * v.shape[1])[:, None]
    return order.ravel()


def _scatter(sorted_vals: np.ndarray, flat_order: np.ndarray) -> np.ndarray:
    """Put values given in sorted order back at their draws' positions."""
    out = np.empty(sorted_vals.size)
    out[flat_order] = sorted_vals.ravel()
    return out


@lru_cache(maxsize=8)
def _z_table(n: int) -> np.ndarray:
    """z = Φ⁻¹((r - 3/8) / (n - 2·3/8 + 1)) for every possible average rank r = k/2, k = 2..2n.

    Ranks with ties averaged ('average') are always half-integers, so a table lookup gives the
    same numbers as scipy's rankdata followed by norm.ppf (which is ndtri) on every element,
    with 2n instead of n·P evaluations of ndtri.
    """
    rank = np.arange(2, 2 * n + 1) / 2
    return ndtri((rank - _BLOM_C) / (n - 2 * _BLOM_C + 1))


def _z_sorted(srt: np.ndarray) -> np.ndarray:
    """Rank-normal scores of row-sorted values, in sorted order; ties get their average rank."""
    n_par, n = srt.shape
    table = _z_table(n)
    # position i of a row without ties has rank i + 1 (table index 2i); fix up tied runs only,
    # which are few for continuous draws (folded draws of an even count always have one: the two
    # values either side of the median) and cheap to find as "equal to the previous value"
    z = np.tile(table[0::2], (n_par, 1)).ravel()
    dup = np.zeros((n_par, n), dtype=bool)
    np.equal(srt[:, 1:], srt[:, :-1], out=dup[:, 1:])  # never true at a row's first position
    dup = np.flatnonzero(dup.ravel())
    if dup.size:
        # consecutive duplicates form one run that starts one position before its first one;
        # runs never cross rows because a row's first position is never a duplicate
        opens = np.ones(dup.size, dtype=bool)
        opens[1:] = dup[1:] != dup[:-1] + 1
        closes = np.ones(dup.size, dtype=bool)
        closes[:-1] = opens[1:]
        first, last = dup[opens] - 1, dup[closes]
        # ranks first+1 .. last+1 (row positions) average to (first + last + 2) / 2: index first+last
        vals = table[first % n + last % n]
        z[first] = vals
        z[dup] = vals[np.cumsum(opens) - 1]
    return z.reshape(n_par, n)


def _quantile_type7(srt: np.ndarray, prob: float) -> np.ndarray:
    """ArviZ's quantile (scipy mquantiles, alphap = betap = 1) of each sorted row, same arithmetic."""
    n = srt.shape[1]
    p = np.atleast_1d(np.asarray(prob))
    m = 1 + p * (1.0 - 1 - 1)
    aleph = n * p + m
    k = int(np.floor(aleph.clip(1, n - 1)).astype(int)[0])
    gamma = float((aleph - k).clip(0, 1)[0])
    return (1.0 - gamma) * srt[:, k - 1].astype(np.float64) + gamma * srt[:, k].astype(np.float64)


def _rhat_core(z: np.ndarray) -> np.ndarray:
    """Split R-hat of ``(P, chains, draws)`` (ArviZ's _rhat), NaN where within variance is 0."""
    n = z.shape[2]
    chain_mean = z.mean(axis=2)
    chain_var = z.var(axis=2, ddof=1)
    between = n * chain_mean.var(axis=1, ddof=1)
    within = chain_var.mean(axis=1)
    return np.sqrt((between / within + n - 1) / n)


def _ess_core(y: np.ndarray) -> np.ndarray:
    """ESS of ``(P, chains, draws)`` as ArviZ's _ess, vectorised over P.

    ArviZ computes every chain's full autocovariance by FFT, averages over chains, then walks
    lag pairs (2j, 2j+1) only until a pair sum is no longer positive (Geyer's initial positive
    sequence). That stop comes after a handful of lags for well-mixing quantities, so lags are
    computed in stages and a quantity leaves as soon as its stop is among the lags computed:
    the first ``_LAG_STAGES[0]`` lags as direct dot products (cheaper than any FFT), then
    ``_LAG_STAGES[1]`` lags by an FFT padded just enough for them, and finally all lags by the
    FFT with ArviZ's padding. Every stage gives the same autocovariances up to rounding (~1e-16 of
    the variance), and Geyer's sequence depends only on the lags up to the stop.
    """
    y = np.asarray(y, dtype=np.float64)
    n_par, n_chain, n = y.shape
    size = n_chain * n
    ess = np.full(n_par, np.nan)
    # ArviZ returns the draw count for a (numerically) constant input
    const = (y.max(axis=(1, 2)) - y.min(axis=(1, 2))) < np.finfo(float).resolution
    ess[const] = size
    todo = np.flatnonzero(~const)
    if not todo.size:
        return ess
    if todo.size < n_par:
        y = y[todo]
    chain_mean = y.mean(axis=2)
    centred = y - chain_mean[:, :, None]
    j_cap = max(1, (n - 1) // 2)  # first j with 2j - 1 >= n - 3: ArviZ's loop bound t < n - 3
    rows = np.arange(todo.size)  # rows of `centred` still without a result
    for stage, n_lags in enumerate((*_LAG_STAGES, 2 * j_cap)):
        n_lags = min(n_lags, 2 * j_cap)
        part = centred if rows.size == centred.shape[0] else centred[rows]
        acov = _acov_direct(part, n_lags) if stage == 0 else _acov_fft(part, n_lags, n_lags == 2 * j_cap)
        rho, pair = _rho_pairs(acov, chain_mean[rows], n, n_chain)
        done = (~(pair > 0)).any(axis=1) | (n_lags == 2 * j_cap)  # stop seen, or no more lags
        ess[todo[rows[done]]] = _geyer(rho[done], pair[done], j_cap, size)
        rows = rows[~done]
        if not rows.size:
            break
    return ess


def _acov_direct(centred: np.ndarray, n_lags: int) -> np.ndarray:
    """Mean over chains of the autocovariances sum_t y_t y_t+k / n, k < n_lags, as dot products."""
    n_chain, n = centred.shape[1:]
    acov = np.empty((centred.shape[0], n_lags))
    for k in range(n_lags):
        acov[:, k] = np.einsum("pcn,pcn->p", centred[:, :, :n - k], centred[:, :, k:])
    return acov / (n * n_chain)


def _acov_fft(centred: np.ndarray, n_lags: int, full: bool) -> np.ndarray:
    """The same by FFT; ``full``: ArviZ's padding next_fast_len(2n), else just enough for
    ``n_lags`` lags without wrap-around (n + n_lags - 1). ArviZ inverts each chain's power
    spectrum and then averages; the inverse FFT is linear, so averaging the spectra first gives
    the same mean autocovariance with one inverse FFT per quantity."""
    n_chain, n = centred.shape[1:]
    m = next_fast_len(2 * n if full else n + n_lags - 1)
    f = np.fft.rfft(centred, n=m, axis=2)
    re_im = f.view(np.float64).reshape(*f.shape, 2)
    power = np.einsum("pckr,pckr->pk", re_im, re_im) / n_chain  # mean over chains of |f|²
    return np.fft.irfft(power, n=m, axis=1)[:, :n_lags] / n


def _rho_pairs(acov: np.ndarray, chain_mean: np.ndarray, n: int, n_chain: int) -> tuple[np.ndarray, np.ndarray]:
    """Autocorrelation estimates rho_k (ArviZ's formula, with the between-chain variance) and
    the lag-pair sums S_j = rho_2j + rho_2j+1, where ArviZ takes rho_0 = 1 exactly."""
    mean_var = acov[:, 0] * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if n_chain > 1:
        var_plus = var_plus + chain_mean.var(axis=1, ddof=1)
    rho = 1.0 - (mean_var[:, None] - acov) / var_plus[:, None]
    pair = rho[:, 0::2] + rho[:, 1::2]
    pair[:, 0] = 1.0 + rho[:, 1]
    return rho, pair


def _geyer(rho: np.ndarray, pair: np.ndarray, j_cap: int, size: int) -> np.ndarray:
    """ESS from Geyer's initial monotone sequence, ArviZ's loop without the loop.

    ArviZ walks pairs j = 1, 2, ... while the previous pair sum is > 0 and j < j_cap; the pair
    where it stops is stored only if its sum is >= 0, and its even lag anyway if positive. The
    pairs before are then made monotone, each sum replaced by the running minimum (ArviZ's
    halving of the previous pair sum reproduces exactly that). Here: the stopping pair by argmax,
    the monotone step by ``np.minimum.accumulate``, the kept pairs summed under a mask. ``pair``
    must extend at least to the stopping pair.
    """
    n_rows, n_pairs = pair.shape
    stop = ~(pair > 0)  # NaN stops too
    # J = 1 + first j with S_j not > 0, capped at j_cap; pairs 0..J-2 are kept
    big_j = np.where(stop.any(axis=1), np.minimum(stop.argmax(axis=1) + 1, j_cap), j_cap)
    kept = np.arange(n_pairs)[None, :] <= (big_j - 2)[:, None]
    mono = np.minimum.accumulate(np.where(kept, pair, np.inf), axis=1)
    kept_sum = np.where(kept, mono, 0.0).sum(axis=1)
    rows = np.arange(n_rows)
    last_j = big_j - 1
    r_even = rho[rows, 2 * last_j]
    s_last = pair[rows, last_j]
    last = np.where(last_j == 0, 1.0, np.where((s_last >= 0) | (r_even > 0), r_even, 0.0))
    tau = -1.0 + 2.0 * kept_sum + last
    floor = 1 / np.log10(size)
    tau = np.where(floor > tau, floor, tau)  # Python's max(tau, floor) as in ArviZ
    ess = size / tau
    # ArviZ: NaN if any stored autocorrelation is NaN; rho_1 is always stored
    ess[np.isnan(rho[:, 1])] = np.nan
    return ess
