"""Back up a directory and a database dump, verify, restore, and compare: drp from Python.

    python drp-py/examples/backup.py WORKDIR
"""

import filecmp
import sys
from pathlib import Path

import drp

work = Path(sys.argv[1])
keys, site = work / "keys", work / "site" / "www"
site.mkdir(parents=True, exist_ok=True)
(site / "index.html").write_text("<h1>acme</h1>\n")
for name in ("acme", "ops"):
    if not (keys / f"{name}.sec.asc").exists():
        drp.keys_generate(name, keys)
store = (work / "store").as_uri()

snapshot = drp.backup_create(
    store, "acme",
    sources={"www": site, "db": "cmd:echo 'CREATE TABLE customers (id int);'"},
    recipients=[keys / "acme.pub.asc"],
    sign_with=keys / "ops.sec.asc",
)
print(snapshot["snapshot"], snapshot["plain_bytes"], "bytes read")

drp.backup_verify(store, "acme", keys / "acme.sec.asc", trust=[keys / "ops.pub.asc"])
try:
    drp.backup_restore(store, "acme", keys / "acme.sec.asc",
                       snapshot=snapshot["snapshot"], to=work / "restored")
except drp.errors.TargetError as e:  # restores never overwrite
    sys.exit(f"drp: error: {e}")
assert not filecmp.dircmp(site, work / "restored" / "www").diff_files

result = drp.probe({"kind": "command", "command": f"test -s {work}/restored/db"})
print(f"{'healthy' if result['healthy'] else 'unhealthy'}: {result['message']}")
