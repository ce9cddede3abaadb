#!/usr/bin/env python3
"""Fits the step cost model of drafter/speculation_policy.h (StepCostModel) to bench/gpu measurements.

    t = base_us + per_context_us * sum(context) + per_token_us * min(T, X) + per_token_above_us * max(T - X, 0)
        [+ verify_step_us when some sequence feeds the step more than one token]

per model shape, from a gpu_bench JSON (bench/gpu/gpu_bench --json: `decode` at several batches and
contexts, `verify` at several batches with k = 1..16 tokens per sequence, at one context or per point). A decode point of batch B at
context c verifies T = B tokens over B*c cached positions; a verify point T = B*k tokens over B*c.
For each crossover X (0 = one slope, and every token count measured) the four constants are a
least-squares fit of the relative error (small-batch steps count as much as large ones) with every
constant >= 0, each kind of step (decode, verify, and a --steps log's chain and tree steps)
weighing the same in total (--no-balance: each point the same; the grid holds 16x more verify
points than decode ones, and decode is the step a round runs most); the X with the smallest error
wins, among those whose tokens past X cost at least as much as those before it (X is the memory/compute crossover: a steep slope over the first few
tokens is the launch cost of verify rows, not compute, and would price long drafts too cheap).
That launch cost is verify_step_us instead: a per-step constant of the steps in which some
sequence feeds more than one token (verify points with k > 1, a steps log's forwards with more
tokens than sequences), fitted with the rest; it comes out 0 where verify steps cost what decode
steps of as many tokens do.
With --steps NAME=FILE, the forwards a longtail-bench-rounds run logged (--steps-jsonl: tree verifies
at ragged contexts, the steps the budgets actually buy) join shape NAME's points: binned by tokens
(factors of 1.25), cached positions (factors of 2) and whether the step verified token trees, each
bin one point, its median step by forward time, so that thousands of steps weigh as a few dozen grid
points do and the first use of a CUDA graph bucket (its capture) does not move the fit.
Writes the YAML that load_cost_model reads
(configs/cost_model*.yaml: step_cost = the largest model, per_model = every shape) and, with
--report, a Markdown table of measured vs predicted step times per point and shape.

    /work/main/.venv/bin/python scripts/fit_cost_model.py bench/results/gpu_2026-11-23.json \
        --out configs/cost_model_fit_h100.yaml --report bench/results/cost_model_2026-12-02.md
"""
import argparse
import gzip
import itertools
import json
import sys

import numpy as np





# The fewest tokens a crossover may sit at: below a few dozen tokens a bend is the launch cost of
# the first verify rows (verify_step_us), not the memory/compute crossover.
MIN_CROSSOVER = 16


def points(model):
    """(tokens, cached positions, measured step us, label, multi-token step) of every measured step
    of one shape."""
    out = []
    for p in model.get("decode", []):
        if p.get("step_ms") is None:
            continue  # skipped (did not fit on the device)
        b, c = p["batch"], p["context"]
        out.append((b, b * c, p["step_ms"] * 1e3, f"decode B={b} ctx={c}", False))
    verify = model.get("verify") or {}
    for p in verify.get("points", []):
        if p.get("step_ms") is None:
            continue
        b, k = p["batch"], p["k"]
        c = p.get("context", verify.get("context", 0))  # per point since the 2026-12-02 grid
        out.append((b * k, b * c, p["step_ms"] * 1e3, f"verify B={b} k={k} ctx={c}", k > 1))
    return out


def step_points(path):
    """(tokens, cached positions, median forward us, label, multi-token step) per bin of a
    --steps-jsonl file (.gz read as such)."""
    bins = {}
    with (gzip.open(path, "rt") if str(path).endswith(".gz") else open(path)) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                s = json.loads(line)
                t, c, us, b = int(s["tokens_verified"]), int(s["context_positions"]), float(s["forward_us"]), int(s["sequences"])
                tree = bool(s.get("token_trees", False))
            except (ValueError, KeyError, TypeError) as e:
                sys.exit(f"{path}:{n}: not a step line of longtail-bench-rounds --steps-jsonl ({e})")
            if t <= 0 or us <= 0 or b <= 0:
                continue
            key = (tree, t > b, int(np.floor(np.log(t) / np.log(1.25))), int(np.floor(np.log2(c + 1))))
            bins.setdefault(key, []).append((t, c, us, b))
    out = []
    for (tree, multi, _, _), rows in sorted(bins.items()):
        t, c, us, b = sorted(rows, key=lambda r: r[2])[len(rows) // 2]  # the bin's median step
        kind = "tree" if tree else "rounds"
        out.append((t, c, us, f"{kind} B={b} T={t} ctx={c // b}", multi))
    return out


def features(tokens, context, crossover, multi):
    """Columns base, context, token term(s), verify step: the fit's coefficients in that order."""
    t = np.asarray(tokens, dtype=float)
    cols = [np.ones_like(t), np.asarray(context, dtype=float)]
    if crossover > 0:
        cols += [np.minimum(t, crossover), np.maximum(t - crossover, 0.0)]
    else:
        cols += [t]
    cols.append(np.asarray(multi, dtype=float))
    return np.stack(cols, axis=1)


def kind_weights(labels, balance):
    """Per point: 1, or with balance N / (kinds x points of its kind), the kind being the label's
    first word, so that each kind's points weigh as much in total."""
    kinds = [label.split()[0] for label in labels]
    if not balance:
        return np.ones(len(kinds))
    count = {k: kinds.count(k) for k in set(kinds)}
    return np.asarray([len(kinds) / (len(count) * count[k]) for k in kinds])


def nonnegative_fit(a, y, weight=None):
    """Least squares of the relative error (times sqrt(weight) per point) with every coefficient
    >= 0 (exhaustive over which coefficients are pinned at 0: at most 5 of them)."""
    w = (1.0 if weight is None else np.sqrt(weight)) / y
    aw, yw = a * w[:, None], y * w
    best = None
    n = a.shape[1]
    for free in itertools.chain.from_iterable(itertools.combinations(range(n), r) for r in range(1, n + 1)):
        cols = list(free)
        coef, *_ = np.linalg.lstsq(aw[:, cols], yw, rcond=None)
        if np.any(coef < 0):
            continue
        full = np.zeros(n)
        full[cols] = coef
        err = float(np.sum((aw @ full - yw) ** 2))
        if best is None or err < best[1]:
            best = (full, err)
    return best[0]


def fit_shape(pts, balance=True):
    """The best crossover's fit by the weighted error; its rms / max are over the points as they are."""
    tokens = [p[0] for p in pts]
    context = [p[1] for p in pts]
    y = np.asarray([p[2] for p in pts])
    multi = [p[4] for p in pts]
    weight = kind_weights([p[3] for p in pts], balance)
    best, best_err = None, None
    for x in [0.0] + sorted(set(float(t) for t in tokens)):
        if x > 0 and (x <= min(tokens) or x >= max(tokens)):
            continue  # a crossover needs points on both sides
        a = features(tokens, context, x, multi)
        coef = nonnegative_fit(a, y, weight)
        if x > 0 and (coef[3] < coef[2] or coef[2] <= 0 or x < MIN_CROSSOVER):
            continue  # not a memory/compute crossover (free tokens below it would be launch cost)
        rel = (a @ coef - y) / y
        rms = float(np.sqrt(np.mean(rel ** 2)))
        err = float(np.sum(weight * rel ** 2))
        if best is None or err < best_err - 1e-12 * max(1.0, best_err):
            best_err = err
            if x > 0:
                base, ctx, below, above, verify = coef
            else:
                base, ctx, below, verify = coef
                above = below
            best = {"base_us": float(base), "per_token_us": float(below), "crossover_tokens": x,
                    "per_token_above_us": float(above), "per_context_us": float(ctx),
                    "verify_step_us": float(verify),
                    "rms_rel_err": rms, "max_rel_err": float(np.max(np.abs(rel)))}
    return best


def predict(m, tokens, context, multi=False):
    x = m["crossover_tokens"]
    tok = m["per_token_us"] * tokens if x <= 0 or tokens <= x else \
        m["per_token_us"] * x + m["per_token_above_us"] * (tokens - x)
    return m["base_us"] + m["per_context_us"] * context + tok + (m.get("verify_step_us", 0) if multi else 0)


def yaml_entry(m, shape=None):
    keys = ["base_us", "per_token_us", "crossover_tokens", "per_token_above_us", "per_context_us"]
    if m["crossover_tokens"] <= 0:
        keys = ["base_us", "per_token_us", "per_context_us"]
    if m.get("verify_step_us", 0) > 0:
        keys.append("verify_step_us")
    body = ", ".join(f"{k}: {m[k]:.6g}" for k in keys)
    body += f", rms_rel_err: {m['rms_rel_err']:.4f}, max_rel_err: {m['max_rel_err']:.4f}"
    if shape:  # what rollout/measured_cost_model.h matches a checkpoint's config.json by
        body += ", shape: {" + ", ".join(f"{k}: {int(v)}" for k, v in shape.items()) + "}"
    return "{" + body + "}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", help="gpu_bench JSON (bench/results/gpu_*.json)")
    ap.add_argument("--out", required=True, help="YAML to write (configs/cost_model*.yaml)")
    ap.add_argument("--report", help="Markdown table of measured vs predicted steps to write")
    ap.add_argument("--points", action="store_true", help="--report: one row per measured step, not per group")
    ap.add_argument("--balance", action=argparse.BooleanOptionalAction, default=True,
                    help="each kind of step weighs the same in total (default); --no-balance: each point")
    ap.add_argument("--steps", action="append", default=[], metavar="NAME=FILE",
                    help="a longtail-bench-rounds --steps-jsonl log of shape NAME (repeatable)")
    args = ap.parse_args(argv)
    extra = {}
    for spec in args.steps:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            sys.exit(f"--steps {spec}: expected NAME=FILE")
        try:
            extra.setdefault(name, []).extend(step_points(path))
        except OSError as e:
            sys.exit(f"--steps {spec}: {e}")
    with open(args.json) as f:
        data = json.load(f)
    device = data.get("device", "unknown device")
    fits, per_point, shapes = {}, {}, {}
    names = [m.get("name") for m in data.get("models", [])]
    for name in extra:
        if name not in names:
            sys.exit(f"--steps {name}=...: no model of that name in {args.json} (it has {', '.join(map(str, names))})")
    for model in data.get("models", []):
        pts = points(model) + extra.get(model.get("name"), [])
        if len(pts) < 5:
            print(f"{model.get('name')}: {len(pts)} measured steps, too few to fit; skipped", file=sys.stderr)
            continue
        fits[model["name"]] = fit_shape(pts, args.balance)
        shapes[model["name"]] = model.get("shape")
        per_point[model["name"]] = pts
        old = (model.get("verify") or {}).get("fit")  # gpu_bench's own two-term fit, for comparison
        if old:
            lin = {"base_us": old["c_base_us"], "per_token_us": old["c_tok_us"], "crossover_tokens": 0,
                   "per_token_above_us": 0, "per_context_us": 0}
            rel = np.asarray([(predict(lin, t, c) - y) / y for t, c, y, _, _ in pts])
            fits[model["name"]]["linear"] = (lin, float(np.sqrt(np.mean(rel ** 2))), float(np.max(np.abs(rel))))
    if not fits:
        sys.exit(f"{args.json}: no model with enough decode/verify measurements")
    largest = list(fits)[-1]
    src = args.json + "".join(f" + {s}" for s in args.steps)
    with open(args.out, "w") as f:
        f.write(f"# Step cost of the CUDA backend on {device}, fitted by scripts/fit_cost_model.py from {src}:\n")
        f.write("#   t = base_us + per_context_us * cached positions + per_token_us * min(T, crossover_tokens)\n")
        f.write("#       + per_token_above_us * max(T - crossover_tokens, 0)   (microseconds per forward pass)\n")
        f.write("#       + verify_step_us if some sequence feeds the step more than one token (0 when absent)\n")
        f.write("# T: tokens verified in the step; cached positions: summed over its sequences. rms/max_rel_err:\n")
        f.write("# the fit's relative error over the measured steps (decode batch 1-256 at two contexts, verify).\n")
        f.write("# step_cost is the largest model measured; per_model lists every shape. An engine on this\n")
        f.write("# device whose checkpoint has an entry's shape uses that entry by default (speculation.cost_model auto).\n")
        f.write(f"device: \"{device}\"\n")
        f.write("step_cost: " + yaml_entry(fits[largest]) + "\n")
        f.write("per_model:\n")
        for name, m in fits.items():
            f.write(f"  \"{name}\": {yaml_entry(m, shapes.get(name))}\n")
    if args.report:
        with open(args.report, "w") as f:
            f.write(f"## {src} ({device})\n\n")
            f.write("| shape | points | base (us) | per token below / above (us) | crossover (tokens) | per cached position (ns) "
                    "| verify step (us) | rms / max rel. error | linear fit t = c_base + c_tok*T (gpu_bench): rms / max |\n"
                    "|---|---|---|---|---|---|---|---|---|\n")
            for name, m in fits.items():
                lin = m.get("linear")
                lin_s = f"{lin[1] * 100:.1f}% / {lin[2] * 100:.1f}%" if lin else "-"
                f.write(f"| {name} | {len(per_point[name])} | {m['base_us']:.1f} | {m['per_token_us']:.3f} / "
                        f"{m['per_token_above_us']:.3f} | {m['crossover_tokens']:.0f} | {m['per_context_us'] * 1e3:.2f} | "
                        f"{m['verify_step_us']:.0f} | {m['rms_rel_err'] * 100:.1f}% / {m['max_rel_err'] * 100:.1f}% | {lin_s} |\n")
            f.write("\nError by group of steps (rms / max relative error; linear fit = gpu_bench's own t = c_base + c_tok*T on the same steps):\n\n"
                    "| shape | group | steps | error | linear fit |\n|---|---|---|---|---|\n")
            for name, pts in per_point.items():
                m, lin = fits[name], fits[name].get("linear")
                groups = {}
                for t, c, y, label, multi in pts:
                    kind, batch = label.split()[0], int(label.split()[1][2:])
                    ctx = label.split()[-1]
                    size = "B<=16" if batch <= 16 else f"B={batch}"
                    groups.setdefault(f"{kind} {size} {ctx}", []).append((t, c, y, multi))
                for g, rows in groups.items():
                    def err(model):
                        rel = np.asarray([(predict(model, t, c, v) - y) / y for t, c, y, v in rows])
                        return f"{np.sqrt(np.mean(rel ** 2)) * 100:.1f}% / {np.max(np.abs(rel)) * 100:.1f}%"
                    f.write(f"| {name} | {g} | {len(rows)} | {err(m)} | {err(lin[0]) if lin else '-'} |\n")
            for name, pts in (per_point.items() if args.points else []):
                m = fits[name]
                lin = m.get("linear")
                f.write(f"\n### {name}: measured vs predicted step (ms)\n\n| step | tokens | cached positions | "
                        "measured | predicted | error | linear fit | its error |\n|---|---|---|---|---|---|---|---|\n")
                for t, c, y, label, multi in pts:
                    p = predict(m, t, c, multi)
                    lp = predict(lin[0], t, c) if lin else float("nan")
                    f.write(f"| {label} | {t} | {c} | {y / 1e3:.3f} | {p / 1e3:.3f} | {(p - y) / y * 100:+.1f}% | "
                            f"{lp / 1e3:.3f} | {(lp - y) / y * 100:+.1f}% |\n")
    for name, m in fits.items():
        print(f"{name}: rms {m['rms_rel_err'] * 100:.1f}%, max {m['max_rel_err'] * 100:.1f}% "
              f"(base {m['base_us']:.0f} us, {m['per_token_us']:.2f}/{m['per_token_above_us']:.2f} us/token "
              f"around {m['crossover_tokens']:.0f}, {m['per_context_us'] * 1e3:.2f} ns/position, "
              f"{m['verify_step_us']:.0f} us a multi-token step)")


if __name__ == "__main__":
    main()
