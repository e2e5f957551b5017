"""Print the lowest versions setup.cfg declares, as pip constraints (`name==floor`).

    pip install -e ".[test]" -c <(python .ci/floors.py)

CI installs these in a venv of their own and runs the part of the suite that exercises
every dependency (FLOOR_TESTS in .ci/run): a floor is true only if the code works on it.
"""

from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

SETUP_CFG = Path(__file__).resolve().parent.parent / "setup.cfg"
REQUIREMENT = re.compile(r"^([A-Za-z0-9_.\-\[\]]+?)(\[[^\]]*\])?\s*>=\s*([0-9][0-9A-Za-z.]*)")


def floors(setup_cfg: Path = SETUP_CFG) -> list[str]:
    """`name==version` for each `name>=version` of install_requires; a requirement with no
    floor is an error (every dependency must declare the lowest version it works with)."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg)
    pins = []
    for line in parser["options"]["install_requires"].split("\n"):
        line = line.split("#")[0].strip()
        if not line:
            continue
        found = REQUIREMENT.match(line)
        if found is None:
            raise SystemExit(f"{setup_cfg}: {line!r} declares no floor (name>=version)")
        pins.append(f"{found.group(1)}=={found.group(3)}")
    return pins


def check_installed() -> int:
    """With `--check`, run by the floors' venv: each dependency is installed at its floor."""
    from importlib.metadata import version

    from packaging.version import Version

    wrong = 0
    for pin in floors():
        name, floor = pin.split("==")
        installed = version(name)
        print(f"floor: {name} {floor}, installed {installed}")
        wrong += Version(installed) != Version(floor)
    return 1 if wrong else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(check_installed())
    print("\n".join(floors()))
