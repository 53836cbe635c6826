"""Drill a scenario of a plan from Python: what it would hit, the drill, the trend.

    python drp-py/examples/drill.py PLAN SCENARIO

drp-py's tests run it on the workspace `drp demo` makes, its stacks running again on
primary-1 and its spares freed.
"""

import sys

import drp

plan, scenario = sys.argv[1], sys.argv[2]

preview = drp.drill_preview(plan, scenario)  # injects nothing, touches no host
hosts = ", ".join(h["host"] for h in preview["candidates"])
print(f"{preview['fault']} on {preview['hosts_hit']} of {hosts}; {preview['mode']} recovery")

try:
    drill = drp.drill_run(plan, scenario)
except (drp.errors.DrillError, drp.errors.LockedError) as e:  # could not start: no fault
    sys.exit(f"drp: error: {e}")

print(f"drill {drill['drill']}: {drill['verdict']}, time to detect "
      f"{drill['time_to_detect_ms']} ms, downtime {drill['downtime_ms']} ms")
for stack in drill["stack_results"]:
    print(f"  {stack['stack']}: healthy on {stack['healthy_on']} after {stack['rto_ms']} ms")
print(f"report: {drill['report']}")

for past in drp.drill_history(plan):  # getting better?
    if past["scenario"] == scenario:
        print(f"  {past['started_at'][:19]} {past['verdict']:<8} {past['downtime_ms']} ms")
