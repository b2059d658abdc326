"""Docs that must not drift from the code."""

from __future__ import annotations

from pathlib import Path

from fnlb.config import markdown_table

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_doc_lists_every_flag_with_its_default() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert markdown_table() in doc, "regenerate the table: python -m fnlb.config"


def test_readme_names_the_two_commands_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "scripts/demo.sh" in readme
    assert "scripts/test.sh" in readme
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_the_openapi_description_in_docs_is_the_one_fnlb_serves() -> None:
    from fnlb.api.openapi import as_json

    served = as_json()
    assert (ROOT / "docs" / "openapi.json").read_text() == served, (
        "regenerate it: python -m fnlb.api.openapi > docs/openapi.json"
    )
