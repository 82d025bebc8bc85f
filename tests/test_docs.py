"""The docs against the code: store prefixes and table locations (``mlci.layout``, ``mlci.tables``), CLI commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from cli import app
from mlci import layout
from mlci.tables import TABLES

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
README = ROOT / "README.md"
COMMAND_DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]


def section(text: str, title: str) -> str:
    """The body of the ``## title`` section of a markdown text."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"no section '## {title}'"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    """Cells of the markdown table rows in ``text``, header and separator rows left out."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    return [r for r in rows[2:]] if rows else []


def top_level(prefix: str) -> str:
    """``consensus/<snapshot>/`` -> ``consensus/``."""
    return prefix.split("/", 1)[0] + "/"


def documented_store_prefixes() -> list[str]:
    """First-column prefixes of the storage layout table in docs/architecture.md."""
    rows = table_rows(section(ARCHITECTURE.read_text(), "Storage layout"))
    cells = [re.fullmatch(r"`([^`]+)`", r[0]) for r in rows]
    assert all(cells), f"storage layout rows must start with one `prefix/`: {[r[0] for r in rows]}"
    return [c.group(1) for c in cells]


def readme_store_prefixes() -> list[str]:
    """Prefixes README.md lists for ``.mlci/store/`` (its "Where results go" bullet)."""
    text = section(README.read_text(), "Where results go")
    bullet = re.search(r"^- `\.mlci/store/`(.*?)(?=^- |\Z)", text, flags=re.M | re.S)
    assert bullet, "README.md's 'Where results go' lost its `.mlci/store/` bullet"
    return re.findall(r"`([a-z_]+/)`", bullet.group(1))


def test_layout_prefixes_are_single_top_level_folders():
    assert len(set(layout.STORE_PREFIXES)) == len(layout.STORE_PREFIXES)
    assert all(re.fullmatch(r"[a-z_]+/", p) for p in layout.STORE_PREFIXES), layout.STORE_PREFIXES


def test_architecture_storage_table_lists_exactly_the_layout_prefixes():
    documented = [top_level(p) for p in documented_store_prefixes()]
    assert len(documented) == len(set(documented)), f"a prefix has two rows: {documented}"
    assert sorted(documented) == sorted(layout.STORE_PREFIXES), (
        f"not in mlci.layout: {sorted(set(documented) - set(layout.STORE_PREFIXES))}; "
        f"not documented: {sorted(set(layout.STORE_PREFIXES) - set(documented))}"
    )


def test_architecture_storage_table_patterns_match_the_layout():
    """Rows naming a folder per snapshot or round spell it as the layout builds it."""
    built = {
        layout.consensus_prefix("<snapshot>"),
        layout.batch_prefix("<round_id>"),
        layout.advisor_prefix("<model>"),
        layout.embeddings_prefix("<source>"),
        layout.FeatureLayout("<extractor>").root,
        layout.FeatureLayout("<extractor>").quarantine,
        layout.detection_prefix("<model>", "<version>", "<video key>", "<id>"),
    }
    nested = {p for p in documented_store_prefixes() if p != top_level(p)}
    assert nested == built


def test_readme_store_list_is_the_layout():
    listed = readme_store_prefixes()
    assert len(listed) == len(set(listed)), listed
    assert sorted(listed) == sorted(layout.STORE_PREFIXES), (
        f"not in mlci.layout: {sorted(set(listed) - set(layout.STORE_PREFIXES))}; "
        f"not in README.md: {sorted(set(layout.STORE_PREFIXES) - set(listed))}"
    )


def test_architecture_tables_section_matches_the_declarations():
    rows = table_rows(section(ARCHITECTURE.read_text(), "Tables"))
    names = [re.fullmatch(r"`([a-z_]+)`", r[0]).group(1) for r in rows]
    assert sorted(names) == sorted(TABLES)
    for name, row in zip(names, rows):
        spelled = re.match(r"`([^`]+)`", row[1])
        if TABLES[name].location.startswith("MLflow"):
            assert spelled is None and row[1].startswith("MLflow"), row
        else:
            assert spelled is not None, f"{name}: location {row[1]!r} spells no key"
            assert spelled.group(1) == TABLES[name].location, name


# -- CLI commands -----------------------------------------------------------------------------------

#: ``mlci <word> [<word>]`` at the start of a command (``.venv/bin/mlci``, ``$ mlci`` too).
_COMMAND = re.compile(r"^(?:\$\s*)?(?:[\w.~-]*/)*mlci\s+([a-z][a-z0-9-]*)(?:\s+([a-z][a-z0-9-]*))?")


def code_snippets(text: str) -> list[str]:
    """Lines of fenced code blocks, then inline code spans (which may wrap a line)."""
    fences = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    rest = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    lines = [line.strip() for block in fences for line in block.splitlines()]
    spans = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", rest)]
    return lines + spans


def cli_commands() -> dict[str, set[str] | None]:
    """Command name -> its subcommands (a group) or None (a plain command)."""
    root = typer.main.get_command(app)
    # A group (of click, or of the click typer vendors) is the command with a ``commands`` mapping.
    return {name: set(getattr(cmd, "commands", None) or ()) or None for name, cmd in root.commands.items()}


def test_the_docs_show_commands():
    # The scan must find the commands, or the test below checks nothing.
    shown = {m.groups() for p in COMMAND_DOCS for s in code_snippets(p.read_text()) if (m := _COMMAND.match(s))}
    assert {("labels", "ingest"), ("demo-data", None), ("serve", None), ("unlock", None)} <= shown


def unknown_commands(path: Path) -> list[str]:
    """Commands shown in ``path`` that the typer app does not have, sorted."""
    commands = cli_commands()
    unknown = set()
    for snippet in code_snippets(path.read_text()):
        match = _COMMAND.match(snippet)
        if not match:
            continue
        cmd, word = match.groups()
        if cmd not in commands:
            unknown.add(f"mlci {cmd}")
        elif commands[cmd] is not None and word not in commands[cmd]:
            unknown.add(f"mlci {cmd} {word or ''}".rstrip())
    return sorted(unknown)


@pytest.mark.parametrize("doc", COMMAND_DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_documented_commands_exist(doc):
    unknown = unknown_commands(doc)
    assert not unknown, f"{doc.name} shows commands the CLI does not have: {unknown}; it has {sorted(cli_commands())}"


def test_command_check_catches_unknown_commands_and_subcommands(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "Run `mlci labels ingest`, `mlci\nnightly` and `mlci labels`, then\n\n"
        "```\n.venv/bin/mlci predict --store s\nmlci labels purge\nfrom mlci import x\n```\n"
    )
    assert unknown_commands(doc) == ["mlci labels", "mlci labels purge", "mlci predict"]
