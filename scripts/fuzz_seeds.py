#!/usr/bin/env python3
"""Seeds the fuzzers' corpora from the CloudTrail corpus in ../shared (read in place, never
copied into the repo) and the repo's own samples.

reader:    whole small files as AWS and tools write them (gzip included), and the first
           16 KiB of larger ones.
normalise: every KMS record on its own, a few records of other services, and each file's
           KMS records together (up to 32 KiB) so that the fold sees a key's history.

Usage: fuzz_seeds.py CORPUS SAMPLES OUT_DIR
"""
import gzip
import hashlib
import json
import os
import sys

SMALL = 32 * 1024
HEAD = 16 * 1024


def write(out, data):
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


def records(data):
    """The records in a file, whatever its shape (best effort: seeds only)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    text = data.decode("utf-8", "replace")
    values = []
    try:
        values = [json.loads(text)]
    except ValueError:
        for line in text.splitlines():
            try:
                values.append(json.loads(line))
            except ValueError:
                pass
    found = []

    def walk(v):
        if isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            if "eventSource" in v or "eventName" in v:
                found.append(v)
            elif "detail" in v and isinstance(v["detail"], dict):
                found.append(v)
            else:
                for key in ("Records", "Events", "records", "events"):
                    if key in v:
                        walk(v[key])

    for v in values:
        walk(v)
    return found


def main():
    corpus, samples, out = sys.argv[1:4]
    if not os.path.isdir(corpus):
        sys.exit(f"error: the CloudTrail corpus is not at {corpus}; the fuzzers are seeded from it")
    reader = os.path.join(out, "reader")
    normalise = os.path.join(out, "normalise")
    os.makedirs(reader, exist_ok=True)
    os.makedirs(normalise, exist_ok=True)
    others = 0
    for root in (corpus, samples):
        for dirpath, _, names in sorted(os.walk(root)):
            for name in sorted(names):
                if name.endswith(".md"):
                    continue
                with open(os.path.join(dirpath, name), "rb") as f:
                    data = f.read()
                write(reader, data if len(data) <= SMALL else data[:HEAD])
                kms = []
                for r in records(data):
                    text = json.dumps(r, separators=(",", ":")).encode()
                    source = r.get("eventSource") or (r.get("detail") or {}).get("eventSource")
                    if source == "kms.amazonaws.com" or r.get("source") == "aws.kms":
                        kms.append(text)
                        write(normalise, text)
                    elif others < 50:
                        others += 1
                        write(normalise, text)
                together, size = [], 0
                for text in kms:
                    if size + len(text) > SMALL:
                        break
                    together.append(text)
                    size += len(text) + 1
                if len(together) > 1:
                    write(normalise, b'{"Records":[' + b",".join(together) + b"]}")
    for target in (reader, normalise):
        print(f"{target}: {len(os.listdir(target))} seeds")


if __name__ == "__main__":
    main()
