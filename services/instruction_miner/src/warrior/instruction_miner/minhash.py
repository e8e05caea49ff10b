"""MinHash signatures and LSH banding for near-duplicate detection of mined instructions.

A signature is ``num_perm`` minima of universal hashes ``h(x) = (a * x + b) mod (2**61 - 1)``
over the word tokens of a text; the fraction of positions where two signatures agree
estimates the Jaccard similarity of their token sets. Signatures are stored (Redis) and
compared across worker processes and restarts, so every input to them is deterministic:
token hashes come from blake2b, never Python's per-process salted ``hash()``, and the
coefficients come from the raw PCG64 stream, which numpy guarantees stable across versions.
"""

from __future__ import annotations

import functools
import hashlib
import re

import numpy as np
import numpy.typing as npt

__all__ = [
    "EMPTY_VALUE",
    "MERSENNE_PRIME",
    "NUM_PERM",
    "band_keys",
    "jaccard_estimate",
    "lsh_params",
    "shingles",
    "signature",
    "signature_from_bytes",
    "signature_to_bytes",
]

Signature = npt.NDArray[np.uint64]

NUM_PERM = 128

MERSENNE_PRIME = (1 << 61) - 1
"""Modulus of the universal hash family; every real signature value is below it."""

EMPTY_VALUE = np.iinfo(np.uint64).max
"""Value of every position of the signature of a text without tokens.

It lies above every real hash value, so an empty text never matches a non-empty one.
"""

_TOKEN = re.compile(r"\w+")
_P = np.uint64(MERSENNE_PRIME)
_MASK31 = np.uint64((1 << 31) - 1)
_MASK30 = np.uint64((1 << 30) - 1)
# Signatures travel as little-endian bytes so that any machine reads back the same values.
_WIRE_DTYPE = np.dtype("<u8")
# Gauss-Legendre with n nodes is exact for polynomials of degree <= 2n - 1; the LSH
# collision curves are polynomials in s of degree rows * bands <= num_perm, so 128 nodes
# integrate them exactly (to rounding) for every num_perm up to 255.
_QUADRATURE_NODES = 128


def shingles(text: str) -> set[str]:
    """Return the set of lower-cased word tokens (regex ``\\w+``) of ``text``.

    Word unigrams rather than character n-grams, as the reference dedup scripts use:
    instructions are short, and one changed word should cost one token, not a dozen.
    """
    return set(_TOKEN.findall(text.lower()))


def _token_hash(token: str) -> int:
    """Return a stable 64-bit hash of ``token`` (same value in every process)."""
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")


@functools.lru_cache(maxsize=16)
def _coefficients(num_perm: int, seed: int) -> tuple[Signature, Signature]:
    """Return the read-only ``(a, b)`` coefficient vectors for ``num_perm`` hash functions."""
    rng = np.random.Generator(np.random.PCG64(seed))
    # random_raw is the bit generator's own stream, which NEP 19 keeps stable across numpy
    # releases; Generator.integers is allowed to change, and that would silently make
    # signatures already stored in Redis incomparable with new ones.
    raw = rng.bit_generator.random_raw(2 * num_perm)
    # Top 61 bits, reduced: the bias of folding [0, 2**61) onto [0, p) is ~2**-61.
    top = raw >> np.uint64(3)
    # a in [1, p): a = 0 would make the hash function constant.
    a = top[:num_perm] % (_P - np.uint64(1)) + np.uint64(1)
    b = top[num_perm:] % _P
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


def _mulmod(a: Signature, x: Signature) -> Signature:
    """Return ``a * x mod (2**61 - 1)`` elementwise for ``a, x < 2**61 - 1`` without overflow.

    The full product needs 122 bits, so both factors are split into 31-bit halves and the
    partial products are folded with ``2**61 == 1 (mod p)``; every intermediate fits in 64 bits.
    """
    a0, a1 = a & _MASK31, a >> np.uint64(31)  # a1, x1 < 2**30
    x0, x1 = x & _MASK31, x >> np.uint64(31)
    high = (a1 * x1) << np.uint64(1)  # a1*x1 * 2**62 == a1*x1 * 2  (mod p); < 2**61
    mid = a1 * x0 + a0 * x1  # < 2**62; it is weighted by 2**31
    # mid * 2**31 == (mid >> 30) * 2**61 + (mid & mask30) * 2**31
    #             == (mid >> 30) + (mid & mask30) * 2**31  (mod p); < 2**32 + 2**61
    mid_folded = (mid >> np.uint64(30)) + ((mid & _MASK30) << np.uint64(31))
    total = high + mid_folded + a0 * x0  # < 2**61 + 2**61 + 2**32 + 2**62 < 2**64
    return _reduce(total)


def _reduce(v: Signature) -> Signature:
    """Return ``v mod (2**61 - 1)`` for any uint64 ``v``."""
    v = (v & _P) + (v >> np.uint64(61))  # < 2**61 + 8
    return np.where(v >= _P, v - _P, v)


def signature(text: str, *, num_perm: int = NUM_PERM, seed: int = 1) -> Signature:
    """Return the MinHash signature of ``text``: ``num_perm`` uint64 values, each below 2**61 - 1.

    A text without word tokens gets :data:`EMPTY_VALUE` everywhere. Signatures are only
    comparable when made with the same ``num_perm`` and ``seed``.
    """
    if num_perm < 1:
        raise ValueError(f"num_perm must be at least 1, got {num_perm}")
    tokens = shingles(text)
    if not tokens:
        return np.full(num_perm, EMPTY_VALUE, dtype=np.uint64)
    a, b = _coefficients(num_perm, seed)
    hashes = np.fromiter(map(_token_hash, tokens), dtype=np.uint64, count=len(tokens))
    x = hashes % _P  # the universal family needs x < p
    hashed = _reduce(_mulmod(a[np.newaxis, :], x[:, np.newaxis]) + b[np.newaxis, :])
    result: Signature = hashed.min(axis=0)
    return result


def jaccard_estimate(sig_a: Signature, sig_b: Signature) -> float:
    """Return the fraction of positions where two signatures agree (estimated Jaccard)."""
    if sig_a.shape != sig_b.shape or sig_a.ndim != 1 or sig_a.size == 0:
        raise ValueError(f"signatures must be non-empty 1-D arrays of one length, got {sig_a.shape} and {sig_b.shape}")
    return float(np.count_nonzero(sig_a == sig_b)) / sig_a.size


def _banding_error(
    threshold: float, bands: npt.NDArray[np.int64], rows: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Return FP area + FN area under the banding S-curve for each (bands, rows) pair.

    ``P(candidate | Jaccard s) = 1 - (1 - s**rows)**bands``; the FP area integrates it over
    ``[0, threshold]``, the FN area integrates its complement over ``[threshold, 1]``.
    """
    nodes, weights = np.polynomial.legendre.leggauss(_QUADRATURE_NODES)

    def miss_probability(lo: float, hi: float) -> tuple[float, npt.NDArray[np.float64]]:
        # Gauss-Legendre on [lo, hi]: returns the interval half-width and P(not candidate)
        # at every node (rows of the result) for every (bands, rows) pair (columns).
        half = (hi - lo) / 2.0
        s = (half * nodes + (lo + hi) / 2.0)[:, np.newaxis]
        miss: npt.NDArray[np.float64] = (1.0 - s ** rows[np.newaxis, :]) ** bands[np.newaxis, :]
        return half, miss

    half_fp, miss_fp = miss_probability(0.0, threshold)
    half_fn, miss_fn = miss_probability(threshold, 1.0)
    fp = half_fp * (weights @ (1.0 - miss_fp))
    fn = half_fn * (weights @ miss_fn)
    error: npt.NDArray[np.float64] = fp + fn
    return error


@functools.lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """Return ``(bands, rows)``, ``bands * rows <= num_perm``, minimising FP + FN area at ``threshold``.

    The same search as datasketch's ``_optimal_param`` with equal weights: every pair with
    ``bands * rows <= num_perm`` in (bands, rows) order, the first minimum kept. For
    threshold 0.5 and 128 permutations it picks ``(25, 5)`` (S-curve midpoint
    ``(1/25) ** (1/5) ~= 0.53``): a pair at Jaccard 0.5 becomes a candidate ~54% of the time,
    at 0.8 essentially always (> 99.99%), at 0.2 about 0.8% of the time.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if num_perm < 1:
        raise ValueError(f"num_perm must be at least 1, got {num_perm}")
    pairs = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)]
    bands = np.array([b for b, _ in pairs], dtype=np.int64)
    rows = np.array([r for _, r in pairs], dtype=np.int64)
    # argmin returns the first minimum, matching datasketch's strict "<" scan in this order.
    best = int(np.argmin(_banding_error(threshold, bands, rows)))
    return pairs[best]


def band_keys(sig: Signature, bands: int, rows: int) -> list[str]:
    """Return one key per band, ``"<band index>:<blake2b hex of the band's values>"``.

    Equal bands at the same index give equal keys; the index prefix keeps equal values at
    different band positions apart (they are different hash functions, so agreement there
    means nothing). Only the first ``bands * rows`` values are used, as in datasketch.
    """
    if bands < 1 or rows < 1:
        raise ValueError(f"bands and rows must be at least 1, got {bands} and {rows}")
    if sig.ndim != 1 or bands * rows > sig.size:
        raise ValueError(f"{bands} bands of {rows} rows need {bands * rows} values, signature has shape {sig.shape}")
    wire = np.ascontiguousarray(sig, dtype=_WIRE_DTYPE)
    width = len(str(bands - 1))
    return [
        f"{i:0{max(width, 2)}d}:"
        + hashlib.blake2b(wire[i * rows : (i + 1) * rows].tobytes(), digest_size=16).hexdigest()
        for i in range(bands)
    ]


def signature_to_bytes(sig: Signature) -> bytes:
    """Return ``sig`` as little-endian uint64 bytes (8 per value), for storing in Redis."""
    if sig.ndim != 1:
        raise ValueError(f"a signature is 1-D, got shape {sig.shape}")
    return np.ascontiguousarray(sig, dtype=_WIRE_DTYPE).tobytes()


def signature_from_bytes(b: bytes) -> Signature:
    """Return the signature encoded by :func:`signature_to_bytes` (a fresh, writable array)."""
    if len(b) % _WIRE_DTYPE.itemsize:
        raise ValueError(f"signature bytes must be a multiple of 8 long, got {len(b)}")
    result: Signature = np.frombuffer(b, dtype=_WIRE_DTYPE).astype(np.uint64)
    return result
