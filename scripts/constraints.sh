#!/usr/bin/env bash
# Print fnlb's runtime dependency closure as pinned in .venv (the body of constraints.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python - <<'PY'
import importlib.metadata as md
import re

from packaging.markers import default_environment
from packaging.requirements import Requirement

env = {**default_environment(), "extra": ""}
todo = [Requirement(r).name for r in md.distribution("fnlb").requires or [] if "extra ==" not in r]
pins = {}
while todo:
    name = todo.pop()
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in pins:
        continue
    dist = md.distribution(name)
    pins[key] = dist.version
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            todo.append(req.name)
for key in sorted(pins):
    print(f"{key}=={pins[key]}")
PY
