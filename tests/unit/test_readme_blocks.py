"""tools/readme_blocks.py: every shell block of the README is claimed by whoever runs it."""

from __future__ import annotations

import pytest

from tools.readme_blocks import README, ROLES, ReadmeError, blocks, script


def test_every_block_of_the_readme_has_a_role_and_setup_and_tests_exist() -> None:
    found = blocks(README.read_text())
    assert {b.role for b in found} <= set(ROLES)
    assert {"setup", "tests", "cli", "api", "apiserver"} <= {b.role for b in found}


def test_a_block_without_a_marker_is_refused() -> None:
    text = "# T\n\n<!-- readme: setup -->\n```sh\nok\n```\n\nprose\n\n```sh\nrm -rf /\n```\n"
    with pytest.raises(ReadmeError, match="line 10: a shell block without"):
        blocks(text)


def test_a_marker_claims_only_the_next_block() -> None:
    text = "<!-- readme: tests -->\n\n```sh\na\n```\n```sh\nb\n```\n"
    with pytest.raises(ReadmeError, match="line 6"):
        blocks(text)


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ReadmeError, match="unknown role 'later'"):
        blocks("<!-- readme: later -->\n```sh\nx\n```\n")


def test_other_languages_are_not_commands() -> None:
    assert blocks("```yaml\nkind: Pod\n```\n```\nlayout\n```\n") == []


def test_commands_join_continuations_and_drop_comments() -> None:
    (block,) = blocks("<!-- readme: api -->\n```sh\n# a comment\nfoo --a \\\n  --b   # why\n\nbar\n```\n")
    assert block.commands() == ["foo --a --b   # why", "bar"]


def test_script_of_a_missing_role_is_an_error() -> None:
    with pytest.raises(ReadmeError, match="no block for role 'tour'"):
        script("<!-- readme: setup -->\n```sh\nx\n```\n", "tour")


def test_every_test_the_readme_table_names_exists() -> None:
    text = README.read_text()
    table = text[text.index("## What works today") : text.index("## Using the CLI")]
    named: list[str] = []
    for row in table.splitlines():
        if row.startswith("| ") and "`" in row.rsplit("|", 2)[-2]:
            proof = row.rsplit("|", 2)[-2]
            named += [p for p in proof.split("`")[1::2] if "/" in p or p.endswith(".py")]
    assert len(named) >= 20
    root = README.parent
    last_dir = root
    for name in named:
        path = root / name if "/" in name else last_dir / name
        if "/" in name:
            last_dir = path.parent if path.suffix else path
        if not path.exists():
            candidate = last_dir / (name + ".py")
            assert candidate.exists(), f"README names {name}, which does not exist"
