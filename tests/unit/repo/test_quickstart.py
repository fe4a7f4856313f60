"""The README's quick start must stay true: exactly two commands, both real Makefile targets, and CI
must run the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README quick start has no ```bash block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def makefile_targets() -> set[str]:
    targets = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"^([A-Za-z][\w-]*)\s*:(?!=)", line)
        if match:
            targets.add(match.group(1))
    return targets


def test_quickstart_has_exactly_demo_and_test():
    assert quickstart_commands() == ["make demo", "make test"]


def test_quickstart_commands_are_makefile_targets():
    targets = makefile_targets()
    for command in quickstart_commands():
        assert command.startswith("make ")
        assert command.split()[1] in targets, f"{command!r} has no Makefile target"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci/run").read_text()
    test_command = quickstart_commands()[1]
    assert re.search(rf"^\s*{re.escape(test_command)}\s*$", ci, re.M), ".ci/run must call the README's test command"


def test_make_test_and_demo_install_first():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("test", "demo"):
        line = next(l for l in makefile.splitlines() if l.startswith(f"{target}:"))
        assert "install" in line.split(":", 1)[1], f"make {target} must depend on install"
