"""Recover a plan's stacks from Python: what would run, the recovery, its measurements and
report.

    python drp-py/examples/recover.py PLAN [RUN_ID]

With RUN_ID it continues that run (interrupted, or with stacks that failed) instead.
drp-py's tests run it on the workspace `drp demo` makes, its spares freed again.
"""

import sys

import drp

plan = sys.argv[1]
resume = sys.argv[2] if len(sys.argv) > 2 else None

if resume is None:
    preview = drp.recover_dry_run(plan)  # reads the store, changes nothing
    for wave, stacks in enumerate(preview["waves"], 1):
        for stack in stacks:
            chosen = stack["snapshot"]["id"] if stack["snapshot"] else stack["no_snapshot"]
            print(f"wave {wave}: {stack['name']} from {chosen}")
    if not preview["ready"]:
        sys.exit("drp: a stack has no usable snapshot")

try:
    recovery = drp.recover(plan, resume=resume, approve=True)
except drp.errors.LockedError as e:  # another operator's run holds the plan's lock
    sys.exit(f"drp: error: {e}")
except KeyboardInterrupt as e:  # the run keeps its lock and goes on from where it was
    sys.exit(f"interrupted: python {sys.argv[0]} {plan} {e.run_id}")

for m in recovery["measurements"]["stacks"]:
    print(f"{m['stack']}: {m['outcome']}, RTO {m['rto_ms']} ms ({m['rto_verdict']}), "
          f"RPO {m['rpo_ms']} ms ({m['rpo_verdict']})")
run = recovery["run_id"]
drp.report(plan, run, format="html", out=f"{run}.html")
print(f"run {run}: {'PASS' if recovery['passed'] else 'FAIL'}, report {run}.html")
