"""Tests for MinHash signatures and LSH banding."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from warrior.instruction_miner.minhash import (
    BUCKET_FIELD_SIZE,
    EMPTY_VALUE,
    NUM_PERM,
    bucket_fields,
    jaccard_estimate,
    lsh_params,
    shingles,
    signature,
    signature_from_bytes,
    signature_to_bytes,
)

# A 30-word mined request and the same request with one word changed.
REQUEST = (
    "Write a Python function that reads a CSV, removes rows with missing values in the "
    "email column, normalises each phone number to E164 format, and saves the result as Parquet"
)
NEAR_DUPLICATE = REQUEST.replace("Parquet", "JSON")

UNRELATED = [
    REQUEST,
    "How do I center a div horizontally and vertically using CSS flexbox inside a fixed height container?",
    "Explain the difference between a mutex and a semaphore in operating systems with an example in C.",
    "Implement Dijkstra's shortest path algorithm in Rust using a binary heap priority queue.",
    "Why does my Kubernetes pod keep restarting with CrashLoopBackOff after I update the image tag?",
    "Create a SQL query that returns the top five customers by total order value for each month.",
]


def test_fixture_is_a_typical_mined_request() -> None:
    assert len(REQUEST.split()) == 30
    assert len(shingles(REQUEST) ^ shingles(NEAR_DUPLICATE)) == 2  # one word swapped


def test_num_perm_default() -> None:
    assert NUM_PERM == 128
    assert signature("hello world").shape == (NUM_PERM,)


def test_shingles_are_lowercased_word_tokens() -> None:
    assert shingles("Sort THE list, sort the_list!") == {
        "sort",
        "the",
        "list",
        "the_list",
    }
    assert shingles("  \n ") == set()


def test_signature_dtype_shape_and_range() -> None:
    sig = signature(REQUEST, num_perm=64)
    assert sig.dtype == np.uint32
    assert sig.shape == (64,)
    assert (sig < EMPTY_VALUE).all()


def test_signature_depends_only_on_token_set() -> None:
    assert np.array_equal(signature("Sort the list. SORT the list!"), signature("list the sort"))


def test_empty_text_signature_is_all_max() -> None:
    for text in ("", "   ", "!!! ???"):
        sig = signature(text)
        assert (sig == EMPTY_VALUE).all()
        assert sig.dtype == np.uint32
    # An empty text never looks like a real one.
    assert jaccard_estimate(signature(""), signature("hello")) == 0.0


def test_signature_seed_changes_values() -> None:
    assert not np.array_equal(signature(REQUEST, seed=1), signature(REQUEST, seed=2))
    assert np.array_equal(signature(REQUEST, seed=7), signature(REQUEST, seed=7))


def test_signature_pinned_values() -> None:
    # Signatures live in Redis across deploys: a change to tokenising, token hashing or the
    # permutations (a datasketch upgrade included) must be deliberate (and come with a re-index).
    sig = signature("Write a Python function that reverses a string")
    assert sig[:3].tolist() == [1006687480, 569248834, 303103162]


def test_signature_stable_across_processes() -> None:
    code = (
        "import json, sys; from warrior.instruction_miner.minhash import signature; "
        "print(json.dumps(signature(sys.argv[1]).tolist()))"
    )
    # A different hash seed in the child makes any use of Python's salted hash() show up.
    result = subprocess.run(
        [sys.executable, "-c", code, REQUEST],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert json.loads(result.stdout) == signature(REQUEST).tolist()


def test_jaccard_estimate_near_duplicates() -> None:
    true_jaccard = len(shingles(REQUEST) & shingles(NEAR_DUPLICATE)) / len(shingles(REQUEST) | shingles(NEAR_DUPLICATE))
    estimate = jaccard_estimate(signature(REQUEST), signature(NEAR_DUPLICATE))
    assert estimate > 0.6
    assert abs(estimate - true_jaccard) < 0.15
    assert jaccard_estimate(signature(REQUEST), signature(REQUEST)) == 1.0


def test_jaccard_estimate_unrelated() -> None:
    for a, b in itertools.combinations(UNRELATED, 2):
        assert jaccard_estimate(signature(a), signature(b)) < 0.3, (a, b)


def test_jaccard_estimate_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        jaccard_estimate(signature("a b", num_perm=64), signature("a b"))


def test_lsh_params_for_threshold_half_and_128_perms() -> None:
    # What the dedup index uses: 25 bands of 5 rows (S-curve midpoint (1/25)**(1/5) ~ 0.53).
    assert lsh_params(0.5, 128) == (25, 5)


@pytest.mark.parametrize(
    ("threshold", "expected"),
    # Reference points of datasketch's _optimal_param with equal weights.
    [(0.8, (9, 13)), (0.9, (5, 25)), (0.3, (37, 3)), (0.7, (14, 9))],
)
def test_lsh_params_other_thresholds(threshold: float, expected: tuple[int, int]) -> None:
    assert lsh_params(threshold, 128) == expected


def test_lsh_params_respects_budget_and_moves_with_threshold() -> None:
    for num_perm in (16, 64, 200):
        bands, rows = lsh_params(0.5, num_perm)
        assert bands * rows <= num_perm
    # A higher threshold needs more rows per band (a steeper, later S-curve).
    assert lsh_params(0.9, 128)[1] > lsh_params(0.5, 128)[1] > lsh_params(0.2, 128)[1]


def test_lsh_params_allow_a_single_band() -> None:
    # datasketch's MinHashLSH refuses b < 2, but its search picks one band here, and the index takes it.
    assert lsh_params(0.9, 16) == (1, 15)


def test_lsh_params_validates() -> None:
    with pytest.raises(ValueError):
        lsh_params(1.5, 128)
    with pytest.raises(ValueError):
        lsh_params(0.5, 0)


def _fields(sig: np.ndarray, bands: int, rows: int) -> list[bytes]:
    packed = bucket_fields(sig, bands, rows)
    assert len(packed) == bands * BUCKET_FIELD_SIZE
    return [packed[i : i + BUCKET_FIELD_SIZE] for i in range(0, len(packed), BUCKET_FIELD_SIZE)]


def test_near_duplicates_share_a_bucket() -> None:
    bands, rows = lsh_params(0.5, NUM_PERM)
    assert set(_fields(signature(REQUEST), bands, rows)) & set(_fields(signature(NEAR_DUPLICATE), bands, rows))


def test_unrelated_requests_share_no_bucket() -> None:
    bands, rows = lsh_params(0.5, NUM_PERM)
    for a, b in itertools.combinations(UNRELATED, 2):
        shared = set(_fields(signature(a), bands, rows)) & set(_fields(signature(b), bands, rows))
        assert not shared, (a, b)


def test_bucket_fields_format_and_position() -> None:
    sig = signature(REQUEST)
    fields = _fields(sig, 25, 5)
    assert fields[7][:2] == b"\x00\x07"
    # A band's field depends on its values only: change one value, only its band's field moves.
    changed = sig.copy()
    changed[37] ^= 1  # band 7 of 5 rows
    moved = [i for i, (x, y) in enumerate(zip(fields, _fields(changed, 25, 5), strict=True)) if x != y]
    assert moved == [7]
    # The same values in two different band positions must not collide.
    constant = np.full(10, 42, dtype=np.uint32)
    first, second = _fields(constant, 2, 5)
    assert first[2:] == second[2:]
    assert first != second
    assert len(set(_fields(sig, 128, 1))) == 128


def test_bucket_fields_use_only_leading_values_and_validate() -> None:
    sig = signature(REQUEST)
    assert bucket_fields(sig, 3, 10) == bucket_fields(sig[:30], 3, 10)
    with pytest.raises(ValueError):
        bucket_fields(sig, 20, 7)  # 140 > 128 values
    with pytest.raises(ValueError):
        bucket_fields(sig, 0, 5)


def test_bytes_round_trip() -> None:
    for sig in (signature(REQUEST), signature(""), signature(REQUEST, num_perm=7)):
        data = signature_to_bytes(sig)
        assert isinstance(data, bytes)
        assert len(data) == 4 * sig.size
        back = signature_from_bytes(data)
        assert back.dtype == np.uint32
        assert np.array_equal(back, sig)
        back[0] = 0  # a fresh, writable array, not a view of the bytes


def test_bytes_are_little_endian() -> None:
    assert signature_to_bytes(np.array([1], dtype=np.uint32)) == b"\x01" + b"\x00" * 3


def test_from_bytes_rejects_partial_values() -> None:
    with pytest.raises(ValueError):
        signature_from_bytes(b"\x00" * 5)
