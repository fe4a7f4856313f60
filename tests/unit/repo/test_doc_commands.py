"""Every command the docs show must exist as shown (rehearsal finding #6: `stake 200` was documented,
the command is `stake deposit 200`).

Each `tessera …` invocation in README.md, docs/*.md, deployments/README.md and examples/*.md (fenced
lines, inline code spans, the command table of docs/cli.md) is resolved through the real click tree:
every subcommand word must name a command, every `--option` must be one the command (or, before the
first subcommand, the root group) accepts. An invocation without placeholders is parsed in full by
click, types and arguments included. `make X` must be a Makefile target and `ape run X` a script.
Running the documented walk against a chain is tests/e2e/test_testnet_walk.py's job.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", ROOT / "deployments" / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "examples").glob("*.md"))]  # fmt: skip
TESSERA = re.compile(r"(?:^|[\s`(])(?:\S*/)?tessera\s+(.*)$")
PLACEHOLDER = re.compile(r"[\[\]…<>|{}]|\.\.\.|\b[A-Z][A-Z_]+\b|%\w")


@dataclass(frozen=True)
class DocCommand:
    where: str  # file:line
    words: tuple[str, ...]  # after `tessera`
    runnable: bool = False  # a fenced line (meant to be typed as it stands), not a mention in prose

    def __str__(self) -> str:
        return f"{self.where}: tessera {' '.join(self.words)}"

    @property
    def test_id(self) -> str:
        return re.sub(r"\s+", " ", f"{self.where} {' '.join(self.words[:4])}")


def _code_spans(line: str) -> list[str]:
    return re.findall(r"`([^`]+)`", line)


def _command_lines(path: Path) -> list[tuple[int, str, bool]]:
    """(line number, text, fenced) of every fenced line and every inline code span of `path`."""
    found: list[tuple[int, str, bool]] = []
    fenced = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            found.append((number, line, True))
        else:
            found += [(number, span, False) for span in _code_spans(line)]
    return found


def _table_synopses(path: Path) -> list[tuple[int, str, bool]]:
    """docs/cli.md's command table writes synopses without the `tessera` prefix."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        cell = re.match(r"\|\s*`([a-z][^`]*)`", line)
        if cell and cell.group(1).split()[0] in _root().lazy_commands:
            rows.append((number, "tessera " + cell.group(1), False))
    return rows


def _words(text: str) -> tuple[str, ...]:
    text = text.split(" #", 1)[0].rstrip("\\ ")
    try:
        return tuple(shlex.split(text))
    except ValueError:
        return tuple(text.split())


def doc_commands() -> list[DocCommand]:
    commands = []
    for path in DOCS:
        lines = _command_lines(path)
        if path.name == "cli.md":
            lines += _table_synopses(path)
        for number, text, fenced in lines:
            if fenced and path.name.endswith(".md") and re.match(r"\s*(#|//|>>>|\w+ = )", text):
                continue  # a comment or Python statement inside a code block, not a shell line
            match = TESSERA.search(text)
            if match:
                words = _words(match.group(1))
                if words:
                    commands.append(DocCommand(f"{path.relative_to(ROOT)}:{number}", words, fenced))
    return commands


def _root() -> click.Group:
    from protocol.cli.main import cli

    return cli


HELP = {"--help", "-h"}
STOP = {"COMMAND", "...", "…"}


def _options(command: click.Command) -> set[str]:
    names = {n for param in command.params if isinstance(param, click.Option) for n in (*param.opts, *param.secondary_opts)}
    return names | HELP


def _takes_value(command: click.Command, name: str) -> bool:
    for param in command.params:
        if isinstance(param, click.Option) and name in param.opts:
            return not param.is_flag and not param.count
    return False


def _alternatives(word: str) -> list[str]:
    """`cancel|claim|finalize` (a synopsis listing sibling subcommands) -> each of them."""
    return [w for w in word.split("|") if w]


def check(command: DocCommand) -> list[str]:
    """What does not exist of `command`, as messages (empty: it is all there)."""
    problems: list[str] = []
    root = _root()
    words = list(command.words)
    # root options come first (`tessera --network N --account A job list`; `[--debug]` in a synopsis)
    while words and words[0].lstrip("[").startswith("-"):
        word = words.pop(0)
        name = word.lstrip("[").split("=", 1)[0].rstrip("]")
        if name not in _options(root):
            return [f"the root group has no option {name}"]
        if _takes_value(root, name) and "=" not in word and not word.endswith("]") and words:
            words.pop(0)
    if not words or words[0] in STOP:
        return problems
    targets: list[click.Command] = []
    group: click.Command = root
    path: list[str] = []
    while isinstance(group, click.Group) and words and not words[0].startswith("-") and words[0] not in STOP:
        names = _alternatives(words[0])
        found = [group.get_command(click.Context(group), n) for n in names]
        if any(f is None for f in found):
            missing = [n for n, f in zip(names, found) if f is None]
            return [f"`tessera {' '.join(path)}` has no subcommand {', '.join(missing)!s}"]
        path.append(words.pop(0))
        if len(found) > 1:
            targets = found
            break
        group = found[0]
    targets = targets or [group]
    for target in targets:
        if isinstance(target, click.Group):
            if words and not words[0].startswith("-") and words[0] not in STOP:
                problems.append(f"`tessera {' '.join(path)}` is a group: {words[0]!r} is not one of its commands")
            continue
        for word in words:
            if word.startswith("--"):
                name = word.split("=", 1)[0].rstrip("]").lstrip("[")
                name = name.split("|", 1)[0]
                if name not in _options(target):
                    problems.append(f"`tessera {' '.join(path)}` has no option {name}")
        concrete = command.runnable and not any(PLACEHOLDER.search(w) for w in command.words)
        if concrete and not problems and not HELP & set(words):
            try:
                target.make_context(f"tessera {' '.join(path)}", list(words), resilient_parsing=False)
            except click.UsageError as exc:
                problems.append(f"click refuses it: {exc.format_message()}")
    return problems


def test_the_docs_name_commands() -> None:
    commands = doc_commands()
    files = {c.where.split(":")[0] for c in commands}
    # a silent extractor would make every other test here pass vacuously
    assert len(commands) >= 40 and {"README.md", "docs/cli.md", "docs/operator-guide.md"} <= files, files


@pytest.mark.parametrize("command", doc_commands(), ids=lambda c: c.test_id)
def test_every_documented_tessera_command_exists_as_written(command: DocCommand) -> None:
    problems = check(command)
    assert not problems, f"{command}: " + "; ".join(problems)


def test_the_checker_catches_drift() -> None:
    """The defects the rehearsal met, and plain misspellings, must be caught."""
    bad = ["stake 200", "job submitt spec.json", "job list --mien", "--netwrok x job list", "model show",
           "job show notanumber"]  # fmt: skip
    for text in bad:
        assert check(DocCommand("test", _words(text), runnable=True)), text
    for text in ["stake deposit 200", "--network ethereum:local:foundry job list --mine", "job show 3",
                 "env show --arithmetic portable/1", "[--network N] [--debug] COMMAND ..."]:  # fmt: skip
        assert not check(DocCommand("test", _words(text), runnable=True)), text


def _makefile_targets() -> set[str]:
    return {m.group(1) for m in re.finditer(r"^([A-Za-z][\w-]*)\s*:(?!=)", (ROOT / "Makefile").read_text(), re.M)}


def test_documented_make_targets_and_ape_scripts_exist() -> None:
    targets, missing = _makefile_targets(), []
    for path in DOCS:
        for number, text, _ in _command_lines(path):
            for match in re.finditer(r"(?:^|\s)make ([a-z][\w-]*)", text):
                if match.group(1) not in targets:
                    missing.append(f"{path.relative_to(ROOT)}:{number}: make {match.group(1)}")
            for match in re.finditer(r"ape run ([a-z][\w-]*)", text):
                if not (ROOT / "scripts" / f"{match.group(1)}.py").is_file():
                    missing.append(f"{path.relative_to(ROOT)}:{number}: ape run {match.group(1)}")
    assert not missing, missing
