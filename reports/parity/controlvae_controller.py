"""ControlVAE controller parity (issue 20): the authors' PIDControl and ours fed the same KL sequence, β compared
step by step.

The KL sequence is recorded from a real run of ours (`controlvae` at smoke size on the given dataset, its trace of
per-update batch KLs); the authors' controller is imported from their repository's file
`Language_modeling/Text_gen_PTB/PID.py` (pass its path; nothing of it is copied here) and called as their
vae_train.py calls it: `pid.pid(exp_kl, kl_loss, Kp, Ki)` with Ki = -ki. Both start at β = 0 for the first update.

    python reports/parity/controlvae_controller.py /path/to/PID.py [--dataset synthetic]
"""
from __future__ import annotations

import argparse
import importlib.util
import sys

from collapse_bench import registry
from collapse_bench.cell import CellSpec, build_trainer


def load_theirs(path: str):
    spec = importlib.util.spec_from_file_location("authors_pid", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PIDControl


def recorded_run(dataset: str):
    method = registry.get("controlvae")()
    trainer = build_trainer(CellSpec("controlvae", dataset, "smoke", 0, method.params.to_dict()))
    trainer.fit()
    return trainer.method


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pid_py", help="the authors' Language_modeling/Text_gen_PTB/PID.py")
    ap.add_argument("--dataset", default="synthetic")
    args = ap.parse_args()
    method = recorded_run(args.dataset)
    p, kls, ours = method.params, method.trace["kl"], method.trace["beta"]
    pid = load_theirs(args.pid_py)()
    theirs = [0.0] + [pid.pid(p.set_point, kl, p.kp, -p.ki) for kl in kls[:-1]]
    worst = max(abs(a - b) for a, b in zip(ours, theirs))
    print(f"{len(kls)} updates on {args.dataset} (smoke); KL {min(kls):.3f}..{max(kls):.3f}; "
          f"β ours {min(ours):.6f}..{max(ours):.6f}; max |β ours - β theirs| = {worst:.3g}")
    return 0 if worst <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
