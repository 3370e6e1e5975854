#!/usr/bin/env python3
"""Judges a run of the request-smuggling harness (../shared/tools/smuggle): every flag the
harness raised on tether is either explained below (behaviour HTTP asks for, decided in
docs/security.md) or a failure. Exit status 1 on any failure.

    scripts/smuggle-verdict.py OUT_DIR

Reads OUT_DIR/cases.json (the raw cases) and OUT_DIR/summary.txt (the tools, when they ran).
"""
import json
import os
import re
import sys

# Cases after which tether must close the connection (RFC 9112 6.1, 9.3; a response sent before
# the request body was read): the harness's clients send a second request and count it missing.
MUST_CLOSE = {
    "clte-then-get", "clte-hijack", "h10-default-close", "h10-no-keepalive",
    "expect-rejected", "expect-early-401",
}
# Cookies that are not tether's by RFC 6265 (another name, a `Cookie2` field, a value that holds
# a comma): forwarded untouched, token bytes and all.
NOT_OUR_COOKIE = {"cookie-comma", "cookie-upper-name", "cookie2"}
# A declared body that never fully arrives: tether waits for it (request_header_timeout does not
# apply to bodies; the upstream read timeout does).
INCOMPLETE_BODY = {"hdg-severe-01"}


def explain(result, flag):
    """Why `flag` on this case is right, or None."""
    case, answered = result["id"], result.get("tether", "")
    if result["phase"].startswith("control"):
        return "control run against plain Pingora"
    if flag.startswith("MISSING-ANSWER") and case in MUST_CLOSE:
        return "HTTP requires closing after this request"
    if flag.startswith("LEFTOVER") and answered.startswith("400") and "(open)" not in answered:
        return "refused mid-body: the upstream request was cut off and its connection closed"
    if flag == "TOKEN-FORWARDED" and case in NOT_OUR_COOKIE:
        return "not tether's cookie"
    if flag in ("split-by-tether",) or flag.startswith("EXTRA-REQ"):
        return "a pipelined request, framed as HTTP frames it and filtered by tether"
    if flag == "BACKEND-PARSED-UNFILTERED-REQUEST(lax backend)" and result["phase"] == "lazy-backend":
        return "the lax backend parses the body it did not read; tether never reuses that connection"
    if flag == "NO-ANSWER" and case in INCOMPLETE_BODY:
        return "the declared body never arrives"
    return None


def main():
    out = sys.argv[1]
    failures, explained = [], {}
    with open(os.path.join(out, "cases.json")) as f:
        data = json.load(f)
    if data.get("crashes"):
        failures.append("tether crashed: %r" % data["crashes"])
    for result in data["results"]:
        for flag in result["flags"]:
            why = explain(result, flag)
            if why is None:
                failures.append("%-14s %-40s %-30s %s" % (result["phase"], result["id"], result.get("tether", ""), flag))
            else:
                explained[why] = explained.get(why, 0) + 1
    summary_path = os.path.join(out, "summary.txt")
    summary = open(summary_path).read() if os.path.exists(summary_path) else ""
    for bad in ("TETHER NOT RUNNING", "VICTIM-REQUEST-HIJACKED", "SMUGGLED(unfiltered)"):
        if bad in summary:
            failures.append("summary: %s" % bad)
    panics = re.search(r"panics in tether log: (\d+)", summary)
    if panics and panics.group(1) != "0":
        failures.append("summary: %s panics in tether's log" % panics.group(1))

    print("raw cases: %d, flags explained:" % len(data["results"]))
    for why, n in sorted(explained.items(), key=lambda kv: -kv[1]):
        print("  %4d  %s" % (n, why))
    if failures:
        print("NOT EXPLAINED (%d):" % len(failures))
        for f in failures:
            print("  " + f)
        sys.exit(1)
    print("every flag explained")


if __name__ == "__main__":
    main()
