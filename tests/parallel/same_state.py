"""Exit 0 when two checkpoints hold bit-identical master weights and AdamW moments (any
world size or format: read by tests/oracle/ckpt_state.py); with --differ, when the master weights
differ. Usage: same_state.py [--differ] STEP_DIR_A STEP_DIR_B
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "oracle"))
import ckpt_state  # noqa: E402

differ = "--differ" in sys.argv
a, b = [ckpt_state.load(d) for d in sys.argv[1:] if d != "--differ"]
same = {k: set(a[k]) == set(b[k]) and all(np.array_equal(a[k][n], b[k][n]) for n in a[k])
        for k in ("master", "exp_avg", "exp_avg_sq")}
sys.exit(0 if (not same["master"] if differ else all(same.values())) else 1)
