"""Seeded sampling of the scales: nutpie by default, PyMC's NUTS as fallback.

nutpie drives the hand-written numba density of ``fast_density.py``: one kernel for every
structure (the data are arguments), compiled once per machine and kept in numba's on-disk cache,
so a new process loads it in about a second. PyMC's NUTS samples the PyTensor model of
``build.py`` (the same density; PyMC compiles it inside ``pm.sample``). BLAS is pinned to one
thread while sampling: the matrices are tiny and the chains already run in parallel.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

from tierpool.errors import FitError
from tierpool.fit import nutpie_kernel
from tierpool.fit.build import build_model
from tierpool.fit.structure import Structure


@dataclass(frozen=True)
class FitSettings:
    """Sampler settings (DESIGN §5 defaults: tune 2,000, draws 4,000, 4 chains, fixed seed).

    ``target_accept`` 0.97: the marginalised scale posterior is smooth, except that
    ``σ_model ~ HalfNormal(σ_family)`` puts a double-exponential wall on the left of each log
    σ_family (``−Σ σ_m² / 2σ_f²``); the divergences we saw sit there (a family's σ at its 0.05%
    quantile). On 100k synthetic rows at the default draws, 0.9 gave 1–6 divergences per fit and
    0.95 one on seed 3 of 3; 0.97 gave none on seeds 1–4 (and on both demo indicators), at 26–30
    leapfrog steps per draw against 31–46 at 0.99 (docs/fit.md).
    """

    tune: int = 2000
    draws: int = 4000
    chains: int = 4
    target_accept: float = 0.97
    seed: int = 20261121
    sampler: Literal["nutpie", "pymc"] = "nutpie"
    progress: bool = True
    cores: int | None = None

    def validate(self) -> None:
        """Raise FitError on impossible settings."""
        if self.sampler not in ("nutpie", "pymc"):
            raise FitError(f"unknown sampler {self.sampler!r}: use 'nutpie' or 'pymc'")
        if self.tune < 0 or self.draws < 1 or self.chains < 1:
            raise FitError(f"settings need tune >= 0, draws >= 1, chains >= 1 (got {self})")
        if not 0 < self.target_accept < 1:
            raise FitError(f"target_accept must lie in (0, 1), got {self.target_accept}")


@dataclass
class SampleOutput:
    """The raw InferenceData of the scales plus timings (seconds)."""

    idata: Any
    timings: dict[str, float] = field(default_factory=dict)
    cache_hit: bool = False


@contextmanager
def single_thread_blas() -> Iterator[None]:
    """Pin BLAS/OpenMP pools to one thread for the duration (env vars + threadpoolctl)."""
    keys = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=1)
    except ImportError:  # optional: env vars still cover pools created from now on
        limiter = None
    try:
        yield
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def clear_compile_cache() -> None:
    """Forget the kernel compiled in this process (the next fit loads it from disk or compiles)."""
    nutpie_kernel.forget_compiled()


def compiled_model(st: Structure) -> tuple[Any, bool, float]:
    """The nutpie model for this structure, its kernel loaded (from memory, disk, or compiled).

    Returns:
        ``(model, cache_hit, seconds spent loading or compiling)``; a hit means nothing was
        compiled: the kernel was in memory or in numba's on-disk cache.
    """
    start = time.perf_counter()
    model = nutpie_kernel.nutpie_model(st)
    hit = nutpie_kernel.ensure_compiled(st)
    return model, hit, time.perf_counter() - start


def sample_scales(st: Structure, settings: FitSettings) -> SampleOutput:
    """Run NUTS on the scales with the chosen sampler.

    Args:
        st: The structure.
        settings: Sampler settings.

    Returns:
        The posterior of the scales with sample_stats and timings.
    """
    settings.validate()
    with single_thread_blas():
        if settings.sampler == "nutpie":
            return _sample_nutpie(st, settings)
        return _sample_pymc(st, settings)


def _sample_nutpie(st: Structure, s: FitSettings) -> SampleOutput:
    import nutpie

    compiled, hit, t_compile = compiled_model(st)
    start = time.perf_counter()
    idata = nutpie.sample(
        compiled,
        draws=s.draws,
        tune=s.tune,
        chains=s.chains,
        cores=s.cores or min(s.chains, os.cpu_count() or 1),
        seed=s.seed,
        progress_bar=s.progress,
        target_accept=s.target_accept,
        save_warmup=False,
    )
    timings = {"compile": t_compile, "sampling": time.perf_counter() - start}
    return SampleOutput(idata, timings, hit)


def _sample_pymc(st: Structure, s: FitSettings) -> SampleOutput:
    import pymc as pm

    start = time.perf_counter()
    model = build_model(st)
    t_build = time.perf_counter() - start
    start = time.perf_counter()
    with model:
        idata = pm.sample(
            draws=s.draws,
            tune=s.tune,
            chains=s.chains,
            cores=s.cores or min(s.chains, os.cpu_count() or 1),
            random_seed=s.seed,
            target_accept=s.target_accept,
            progressbar=s.progress,
            compute_convergence_checks=False,
        )
    # PyMC compiles inside pm.sample; its compile time is part of "sampling" here
    return SampleOutput(idata, {"compile": t_build, "sampling": time.perf_counter() - start}, False)
