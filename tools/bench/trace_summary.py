"""What a profiled step spent its GPU time on, from a Chrome trace of libtorch's profiler (ours:
logging.profile_start_step; the peer: torch.profiler's export_chrome_trace).

Reports the window (first to last device event), how much of it the device was busy (the union of
kernels, copies and memsets; the rest is time the GPU waited for the host), the kernels ranked by
their total time, and the time by kind (matrix products, attention, NCCL, our fused kernels,
other element-wise work, copies).

With --cpu: the host's operators instead (for a CPU run: `asclepius generate --profile`), ranked
by self time (an operator's time minus the operators it called), with the window and how much of
it operators covered.

Usage: trace_summary.py TRACE.json [--top 5] [--cpu] [--json OUT.json]
"""
import argparse
import collections
import json
import re

DEVICE_CATS = {"kernel", "gpu_memcpy", "gpu_memset"}
KINDS = [  # first match wins; tested against the kernel's name
    ("attention", re.compile(r"flash|fmha|attention|sdpa", re.I)),
    ("nccl", re.compile(r"nccl", re.I)),
    ("matmul", re.compile(r"gemm|nvjet|cutlass|xmma|cublas|s\d+816|splitK", re.I)),
    ("ours", re.compile(r"asc::|rms_?norm|swiglu|rotary|cross_entropy|adamw|_kernel<", re.I)),
    ("elementwise", re.compile(r"elementwise|vectorized|unrolled|reduce|index|fill|copy|cat", re.I)),
]


def kind_of(name, cat):
    if cat == "gpu_memcpy":
        return "memcpy"
    if cat == "gpu_memset":
        return "memset"
    for k, rx in KINDS:
        if rx.search(name):
            return k
    return "other"


def union_length(intervals):
    total, end = 0.0, None
    for b, e in sorted(intervals):
        if end is None or b > end:
            total += e - b
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def summarize(path, top=5):
    events = json.load(open(path))["traceEvents"]
    dev = [e for e in events if e.get("ph") == "X" and e.get("cat") in DEVICE_CATS]
    if not dev:
        return {"trace": path, "error": "no device events in the trace"}
    begin = min(e["ts"] for e in dev)
    end = max(e["ts"] + e["dur"] for e in dev)
    busy = union_length([(e["ts"], e["ts"] + e["dur"]) for e in dev])
    by_name = collections.defaultdict(lambda: [0.0, 0])
    by_kind = collections.Counter()
    for e in dev:
        by_name[(e["name"], e["cat"])][0] += e["dur"]
        by_name[(e["name"], e["cat"])][1] += 1
        by_kind[kind_of(e["name"], e["cat"])] += e["dur"]
    total = sum(v[0] for v in by_name.values())
    ranked = sorted(by_name.items(), key=lambda kv: -kv[1][0])
    return {
        "trace": path,
        "window_ms": (end - begin) / 1e3,
        "device_busy_ms": busy / 1e3,
        "device_busy_fraction": busy / (end - begin),
        "device_events": len(dev),
        "kernel_time_ms": total / 1e3,
        "by_kind_ms": {k: v / 1e3 for k, v in by_kind.most_common()},
        "top": [{"name": n[:160], "kind": kind_of(n, c), "ms": t / 1e3, "share": t / total,
                 "count": cnt, "mean_us": t / cnt}
                for (n, c), (t, cnt) in ranked[:top]],
    }


def summarize_cpu(path, top=5):
    """Host operators by self time; nesting per thread from the events' intervals."""
    events = json.load(open(path))["traceEvents"]
    ops = [e for e in events if e.get("ph") == "X" and e.get("cat") == "cpu_op"]
    if not ops:
        return {"trace": path, "error": "no cpu_op events in the trace"}
    by_tid = collections.defaultdict(list)
    for e in ops:
        by_tid[(e.get("pid"), e.get("tid"))].append(e)
    self_us = collections.defaultdict(lambda: [0.0, 0])
    top_level = []
    for evs in by_tid.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []  # [event, time of its children]
        def close(item):
            ev, child = item
            self_us[ev["name"]][0] += ev["dur"] - child
            self_us[ev["name"]][1] += 1
            if stack:
                stack[-1][1] += ev["dur"]
            else:
                top_level.append((ev["ts"], ev["ts"] + ev["dur"]))
        for e in evs:
            while stack and stack[-1][0]["ts"] + stack[-1][0]["dur"] <= e["ts"]:
                close(stack.pop())
            stack.append([e, 0.0])
        while stack:
            close(stack.pop())
    begin = min(e["ts"] for e in ops)
    end = max(e["ts"] + e["dur"] for e in ops)
    covered = union_length(top_level)
    total = sum(v[0] for v in self_us.values())
    ranked = sorted(self_us.items(), key=lambda kv: -kv[1][0])
    return {
        "trace": path,
        "window_ms": (end - begin) / 1e3,
        "operators_ms": covered / 1e3,
        "operator_calls": len(ops),
        "top_level_calls": len(top_level),
        "top": [{"name": n[:160], "ms": t / 1e3, "share": t / total, "count": cnt,
                 "mean_us": t / cnt} for n, (t, cnt) in ranked[:top]],
    }


def print_cpu_summary(s):
    if "error" in s:
        print(f"{s['trace']}: {s['error']}")
        return
    print(f"window {s['window_ms']:.1f} ms, operators {s['operators_ms']:.1f} ms, "
          f"{s['top_level_calls']} top-level of {s['operator_calls']} operator calls")
    for i, t in enumerate(s["top"], 1):
        print(f"{i:3}. {t['ms']:8.1f} ms {t['share']:6.1%} x{t['count']:<7} "
              f"{t['mean_us']:8.1f} us  {t['name'][:90]}")


def print_summary(s, label=""):
    if "error" in s:
        print(f"{label}{s['trace']}: {s['error']}")
        return
    print(f"{label}window {s['window_ms']:.1f} ms, device busy {s['device_busy_ms']:.1f} ms "
          f"({s['device_busy_fraction']:.0%}), {s['device_events']} device events")
    print(f"{label}by kind: " + ", ".join(f"{k} {v:.1f} ms" for k, v in s["by_kind_ms"].items()))
    for i, t in enumerate(s["top"], 1):
        print(f"{label}{i}. {t['ms']:8.1f} ms {t['share']:6.1%} x{t['count']:<5} [{t['kind']}] "
              f"{t['name'][:110]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--cpu", action="store_true", help="host operators by self time")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.cpu:
        s = summarize_cpu(a.trace, a.top)
        print_cpu_summary(s)
    else:
        s = summarize(a.trace, a.top)
        print_summary(s)
    if a.json:
        json.dump(s, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
