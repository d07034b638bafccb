"""Small dense linear algebra for the numba density kernel (matrices of ~30 rows).

Plain loops rather than LAPACK: at this size the call overhead of numba's LAPACK bindings exceeds
the arithmetic, and ``cholesky`` must report a non-positive-definite matrix instead of raising.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# reassociation lets LLVM vectorise the dot-product loops; no 'nnan'/'ninf': the kernel must still
# see and report non-finite values
FASTMATH = {"reassoc", "contract", "arcp", "nsz"}


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def cholesky(A):
    """Lower Cholesky factor; ``L[0, 0] = -1`` flags a matrix that is not positive definite."""
    n = A.shape[0]
    L = np.zeros((n, n))
    for j in range(n):
        acc = A[j, j]
        for k in range(j):
            acc -= L[j, k] ** 2
        if not acc > 0.0:
            L[0, 0] = -1.0
            return L
        L[j, j] = math.sqrt(acc)
        for i in range(j + 1, n):
            acc = A[i, j]
            for k in range(j):
                acc -= L[i, k] * L[j, k]
            L[i, j] = acc / L[j, j]
    return L


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def forward(L, b):
    """Solve ``L x = b`` (L lower triangular)."""
    n = L.shape[0]
    x = np.empty(n)
    for i in range(n):
        acc = b[i]
        for k in range(i):
            acc -= L[i, k] * x[k]
        x[i] = acc / L[i, i]
    return x


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def backward(L, b):
    """Solve ``Lᵀ x = b`` (L lower triangular)."""
    n = L.shape[0]
    x = np.empty(n)
    for i in range(n - 1, -1, -1):
        acc = b[i]
        for k in range(i + 1, n):
            acc -= L[k, i] * x[k]
        x[i] = acc / L[i, i]
    return x


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def lower_inverse(L):
    """Inverse of a lower-triangular matrix by forward substitution."""
    n = L.shape[0]
    X = np.zeros((n, n))
    for j in range(n):
        X[j, j] = 1.0 / L[j, j]
        for i in range(j + 1, n):
            acc = 0.0
            for k in range(j, i):
                acc -= L[i, k] * X[k, j]
            X[i, j] = acc / L[i, i]
    return X
