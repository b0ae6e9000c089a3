"""Did every operation of an API answer a success at least once during a schemathesis run?

    answered.py HAR SPEC_URL_OR_FILE [--token T] [--exclude PATH]...

Reads schemathesis' HAR report and the OpenAPI description it ran against; prints, per operation,
how many requests it got and how many were answered 2xx, and exits 1 naming every operation that
never answered one: its success responses were never checked against its schema, only refusals.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import urllib.request


def operations(spec: dict) -> list[tuple[str, re.Pattern, str]]:
    ops = []
    for path, item in spec["paths"].items():
        rx = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
        for method in item:
            if method in ("get", "put", "post", "delete", "patch", "head", "options"):
                ops.append((method.upper(), rx, path))
    return ops


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("har")
    ap.add_argument("spec")
    ap.add_argument("--token")
    ap.add_argument("--exclude", action="append", default=[])
    args = ap.parse_args()

    if args.spec.startswith(("http://", "https://")):
        req = urllib.request.Request(args.spec)
        if args.token:
            req.add_header("Authorization", f"Bearer {args.token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            spec = json.load(resp)
    else:
        with open(args.spec) as f:
            spec = json.load(f)
    ops = [op for op in operations(spec) if op[2] not in args.exclude]
    with open(args.har) as f:
        entries = json.load(f)["log"]["entries"]

    sent: collections.Counter = collections.Counter()
    ok: collections.Counter = collections.Counter()
    for entry in entries:
        method = entry["request"]["method"]
        path = re.sub(r"^[a-z]+://[^/]+", "", entry["request"]["url"]).split("?", 1)[0]
        for op_method, rx, template in ops:
            if op_method == method and rx.match(path):
                label = f"{method} {template}"
                sent[label] += 1
                if 200 <= entry["response"]["status"] < 300:
                    ok[label] += 1
                break

    never = []
    for method, _, template in sorted(ops, key=lambda o: (o[2], o[0])):
        label = f"{method} {template}"
        print(f"  {label:<48} {sent[label]:>5} requests, {ok[label]:>4} answered 2xx")
        if ok[label] == 0:
            never.append(label)
    if never:
        print(f"{len(never)} operation(s) never answered a success, so their success answers were never "
              "checked against the schema:", file=sys.stderr)
        for label in never:
            print(f"  {label}", file=sys.stderr)
        return 1
    print(f"every one of the {len(ops)} operations answered a success at least once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
