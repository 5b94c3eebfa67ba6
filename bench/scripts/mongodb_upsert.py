#!/usr/bin/env python3
"""The MongoDB sink's bulk upserts against the server's own write rate, in one run (issue 17).

Starts SecantusDB (the test server, from ~/.cache/wire/secantus-venv, which .ci/run installs)
with in-memory storage on a free port of 127.0.0.1, then alternates, ROUNDS times each:
  - `insert_many`: pymongo inserts N documents in unordered batches of BATCH (the server's own
    insert rate, the ceiling for any client);
  - `bulk upsert (pymongo)`: pymongo sends the same documents as unordered `replaceOne` upserts
    by `_id` in batches of BATCH (what the sink asks of the server, without Wire);
  - `wire mongodb sink`: `wire run` reads the same N rows from a JSON-lines file and upserts
    them with the MongoDB sink (`mode: upsert`, `key: [id]`, `batch_rows: BATCH`); the wall
    time of the whole run, start-up included.
Each round writes into a fresh collection. Prints docs/s (median of the rounds) and each rate
as a ratio of `insert_many`, as a Markdown table.

  bench/scripts/mongodb_upsert.py [--wire PATH] [--docs N] [--batch N] [--rounds N]
      (defaults: target/debug/wire, 20000 documents, batches of 500, 3 rounds)
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VENV = os.path.expanduser("~/.cache/wire/secantus-venv")
sys.path.insert(0, next(
    os.path.join(VENV, "lib", d, "site-packages") for d in os.listdir(os.path.join(VENV, "lib"))))
import pymongo  # noqa: E402  (the server's venv ships it)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docs(n):
    return [{"_id": i, "id": i, "auction": i % 1000, "price": i * 7 % 10007, "bidder": f"b{i}"}
            for i in range(n)]


def insert_many(db, name, rows, batch):
    start = time.monotonic()
    coll = db[name]
    for at in range(0, len(rows), batch):
        coll.insert_many(rows[at:at + batch], ordered=False)
    return len(rows) / (time.monotonic() - start)


def bulk_upsert(db, name, rows, batch):
    start = time.monotonic()
    coll = db[name]
    for at in range(0, len(rows), batch):
        ops = [pymongo.ReplaceOne({"_id": r["_id"]}, r, upsert=True) for r in rows[at:at + batch]]
        coll.bulk_write(ops, ordered=False)
    return len(rows) / (time.monotonic() - start)


def wire_sink(wire, work, port, name, n, batch):
    spec = os.path.join(work, f"{name}.yaml")
    with open(spec, "w") as f:
        f.write(f"""name: {name}
sources:
  rows: {{type: file, path: rows.jsonl, schema: {{id: i64, auction: i64, price: i64, bidder: string}}}}
sinks:
  out:
    type: mongodb
    from: rows
    uri: mongodb://127.0.0.1:{port}/?directConnection=true
    database: bench
    collection: {name}
    mode: upsert
    key: [id]
    batch_rows: {batch}
""")
    start = time.monotonic()
    subprocess.run([wire, "run", "--no-progress", "--data-dir", os.path.join(work, "data"), spec],
                   cwd=work, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return n / (time.monotonic() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--wire", default=os.path.join(ROOT, "target/debug/wire"))
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([os.path.join(VENV, "bin/secantusd-py"), "--host", "127.0.0.1",
                               "--port", str(port), "--storage-path", ":memory:",
                               "--log-level", "WARNING"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        client = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true",
                                     serverSelectionTimeoutMS=30000)
        client.admin.command("ping")
        db = client.bench
        rows = docs(args.docs)
        figures = {"insert_many": [], "bulk upsert (pymongo)": [], "wire mongodb sink": []}
        with tempfile.TemporaryDirectory() as work:
            with open(os.path.join(work, "rows.jsonl"), "w") as f:
                for r in rows:
                    f.write('{"id": %d, "auction": %d, "price": %d, "bidder": "%s"}\n'
                            % (r["id"], r["auction"], r["price"], r["bidder"]))
            for round_ in range(args.rounds):
                figures["insert_many"].append(
                    insert_many(db, f"im{round_}", [dict(r) for r in rows], args.batch))
                figures["bulk upsert (pymongo)"].append(
                    bulk_upsert(db, f"up{round_}", rows, args.batch))
                figures["wire mongodb sink"].append(
                    wire_sink(args.wire, work, port, f"wire{round_}", args.docs, args.batch))
                for name in (f"im{round_}", f"up{round_}", f"wire{round_}"):
                    count = db[name].count_documents({})
                    assert count == args.docs, f"{name}: {count} documents"
    finally:
        server.terminate()
        server.wait()
    base = statistics.median(figures["insert_many"])
    print(f"command: {' '.join(sys.argv)}  (docs {args.docs}, batch {args.batch}, "
          f"rounds {args.rounds}, server SecantusDB 0.7.0b3 in memory)")
    print("| writer | docs/s (median) | rounds | vs insert_many |")
    print("|---|---|---|---|")
    for name, values in figures.items():
        median = statistics.median(values)
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {name} | {median:.0f} | {rounds} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
