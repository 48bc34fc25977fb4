"""Scan rate of the pure scanners (riskpolicy/scan.py): objects/s and MB/s of source, one core.

    python bench/riskscan.py [--objects 400] [--kb 8]

Synthetic CloudFunctions (inline JS of --kb KiB each, one in ten with a planted secret and a resident ID number)
and ConfigMaps; prints a table and one JSON line. This is the scanners' cost only: the background loop's listing
and report writes come on top.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from mpcloud_operator.riskpolicy import scan


def make_objects(n: int, kb: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    line = "const v{i} = await db.collection('orders').where({{user: ctx.user, n: {n}}}).get();"
    out = []
    for i in range(n):
        body = "\n".join(line.format(i=j, n=rng.randint(0, 10**6)) for j in range(kb * 1024 // 80))
        if i % 10 == 0:
            body += "\nconst key = 'AKIAIOSFODNN7EXAMPLE'; // owner 11010519491231002X"
        spec = {"source": {"inline": {"files": {"index.js": body}}}, "runtime": "nodejs20"}
        if i % 2:
            out.append({"apiVersion": "mpcloud.io/v1alpha1", "kind": "CloudFunction",
                        "metadata": {"name": f"f{i}", "namespace": "bench"}, "spec": spec})
        else:
            out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}", "namespace": "bench"},
                        "data": {"index.js": body}})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=400)
    ap.add_argument("--kb", type=int, default=8)
    args = ap.parse_args()
    objs = make_objects(args.objects, args.kb)
    s = scan.ScanSettings(words=("刷单", "casino"))
    scan.scan_object(objs[0], s)  # load the plugins
    rows = []
    for label, settings in (("all rules", s),
                            ("secrets only", scan.ScanSettings(phone_numbers=False, resident_ids=False,
                                                               bank_cards=False, images=False)),
                            ("personal data only", scan.ScanSettings(secrets=False, images=False))):
        t0 = time.perf_counter()
        hits = sum(len(scan.scan_object(o, settings)) for o in objs)
        dt = time.perf_counter() - t0
        mb = sum(scan.source_bytes(o) for o in objs) / 1e6
        rows.append({"rules": label, "objects": len(objs), "kb_each": args.kb, "seconds": round(dt, 3),
                     "objects_per_s": round(len(objs) / dt, 1), "mb_per_s": round(mb / dt, 3), "hits": hits})
    print(f"{'rules':<20}{'objects':>8}{'KiB':>5}{'s':>8}{'obj/s':>9}{'MB/s':>8}{'hits':>6}")
    for r in rows:
        print(f"{r['rules']:<20}{r['objects']:>8}{r['kb_each']:>5}{r['seconds']:>8}{r['objects_per_s']:>9}"
              f"{r['mb_per_s']:>8}{r['hits']:>6}")
    print(json.dumps({"bench": "riskscan", "rows": rows}))


if __name__ == "__main__":
    main()
