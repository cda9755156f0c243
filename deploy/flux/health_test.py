#!/usr/bin/env python3
"""Tests of the Flux health expressions of kustomizations.yaml, evaluated by a real CEL
implementation (the PyPI package cel-python; tests/support/install-deps.sh puts it in a
virtualenv). Flux's rules: `inProgress` true -> InProgress, else `failed` true -> Failed,
else `current` true -> Current, else InProgress; an evaluation error -> InProgress.

    python health_test.py [case.json ...]

Extra arguments are JSON files {"name": ..., "obj": {...}, "status": "Current"} (objects
as a real controller wrote them, produced by tests/tests/helm_controller.rs).
"""
import json
import os
import sys

import celpy
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))


def expressions():
    with open(os.path.join(HERE, "kustomizations.yaml")) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    config = next(d for d in docs if d["metadata"]["name"] == "postern-config")
    return {e["kind"]: e for e in config["spec"]["healthCheckExprs"]}


ENV = celpy.Environment()


def evaluate(expr, obj):
    if not expr:
        return False
    program = ENV.program(ENV.compile(expr))
    activation = {k: celpy.json_to_cel(v) for k, v in obj.items()}
    try:
        result = program.evaluate(activation)
    except celpy.CELEvalError:
        return None
    if isinstance(result, celpy.CELEvalError):
        return None
    return bool(result)


def health(check, obj):
    results = [evaluate(check.get(k), obj) for k in ("inProgress", "failed", "current")]
    if None in results:
        return "InProgress"
    in_progress, failed, current = results
    if in_progress:
        return "InProgress"
    if failed:
        return "Failed"
    if current:
        return "Current"
    return "InProgress"


def cond(type_, status, reason, gen=1):
    return {"type": type_, "status": status, "reason": reason, "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": gen}


def obj(kind, conditions, generation=1):
    o = {"apiVersion": "postern.dev/v1alpha1", "kind": kind,
         "metadata": {"name": "x", "namespace": "mail", "generation": generation}}
    if conditions is not None:
        o["status"] = {"conditions": conditions}
    return o


def cases(kind):
    ready = [cond("Accepted", "True", "Accepted"), cond("ResolvedRefs", "True", "ResolvedRefs"),
             cond("Programmed", "True", "Programmed"), cond("Ready", "True", "Ready")]
    return [
        ("no status yet", obj(kind, None), "InProgress"),
        ("no conditions", {**obj(kind, None), "status": {}}, "InProgress"),
        ("no Ready condition", obj(kind, [cond("Accepted", "True", "Accepted")]), "InProgress"),
        ("ready", obj(kind, ready), "Current"),
        ("ready for an older generation", obj(kind, ready, generation=2), "InProgress"),
        ("gateways rolling out", obj(kind, [cond("Ready", "False", "Pending")]), "InProgress"),
        ("no gateway yet", obj(kind, [cond("Ready", "False", "NoGateways")]), "InProgress"),
        ("CRL not fetched yet", obj(kind, [cond("Ready", "False", "NotFetched")]), "InProgress"),
        ("unknown", obj(kind, [cond("Ready", "Unknown", "Reconciling")]), "InProgress"),
        ("missing Secret", obj(kind, [cond("Ready", "False", "SecretNotFound")]), "Failed"),
        ("gateway refused", obj(kind, [cond("Ready", "False", "GatewayRefused")]), "Failed"),
        ("failure of an older generation", obj(kind, [cond("Ready", "False", "InvalidValue")], generation=3), "InProgress"),
        ("stale CRL", obj(kind, [cond("Ready", "False", "CrlStale")]), "Failed"),
    ]


def main():
    checks = expressions()
    passed = failed = 0
    todo = []
    for kind, check in checks.items():
        for name, o, want in cases(kind):
            todo.append((f"{kind}: {name}", check, o, want))
    for path in sys.argv[1:]:
        with open(path) as f:
            case = json.load(f)
        todo.append((case["name"], checks[case["obj"]["kind"]], case["obj"], case["status"]))
    for name, check, o, want in todo:
        got = health(check, o)
        if got == want:
            passed += 1
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name}: {got}, expected {want}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
