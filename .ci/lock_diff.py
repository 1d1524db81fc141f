"""Prints the packages of a `pip freeze` (stdin) whose version differs from the lock file given as argument."""
import re
import sys


def pins(lines):
    found = {}
    for line in lines:
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


with open(sys.argv[1], encoding="utf-8") as lock_file:
    locked = pins(lock_file)
installed = pins(sys.stdin)
changed = sorted(name for name in installed.keys() & locked.keys() if installed[name] != locked[name])
for name in changed:
    print(f"  {name}: lock {locked[name]} -> newest {installed[name]}")
for name in sorted(installed.keys() - locked.keys()):
    print(f"  {name}: not in the lock, newest {installed[name]}")
if not changed and not installed.keys() - locked.keys():
    print("  none: the lock is the newest allowed set")
