"""Reads a run's TensorBoard event file with the tensorboard package's own reader and checks the
scalars equal metrics.jsonl (loss, lr, grad_norm per step). Usage: check_tensorboard.py RUN_DIR
"""
import glob
import json
import math
import sys

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto import event_pb2  # noqa: F401  (the reader yields these)

run = sys.argv[1]
files = glob.glob(f"{run}/tensorboard/events.out.tfevents.*")
assert len(files) == 1, files
events = list(EventFileLoader(files[0]).Load())  # checks the CRCs as it reads
assert events[0].file_version == "brain.Event:2", events[0]
got = {}
for e in events[1:]:
    for v in e.summary.value:
        # Older files carry simple_value; the loader migrates them to tensor form.
        val = v.simple_value if v.HasField("simple_value") else v.tensor.float_val[0]
        got[(v.tag, e.step)] = val
want = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
assert want, "metrics.jsonl is empty"
n = 0
for m in want:
    for tag, key in [("train/loss", "loss"), ("train/lr", "lr"), ("train/grad_norm", "grad_norm")]:
        g = got[(tag, m["step"])]
        assert math.isclose(g, m[key], rel_tol=1e-6, abs_tol=1e-12), (tag, m["step"], g, m[key])
        n += 1
print(f"{files[0]}: {len(events)} events, {n} scalars match metrics.jsonl")
