"""Reading manifest files: multi-document YAML, folders, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

from beatkeeper.manifests import manifest_files, parse_documents, read_documents

SCHEDULE = "apiVersion: beatkeeper.io/v1alpha1\nkind: Schedule\nmetadata: {name: a}\n"


def test_single_document_source_has_no_index() -> None:
    [doc] = parse_documents(SCHEDULE, "a.yaml")
    assert doc.source == "a.yaml"
    assert doc.content["kind"] == "Schedule"


def test_several_documents_are_numbered_from_one() -> None:
    docs = list(parse_documents(f"{SCHEDULE}---\n{SCHEDULE}", "a.yaml"))
    assert [d.source for d in docs] == ["a.yaml#1", "a.yaml#2"]


def test_other_api_groups_and_empty_documents_are_passed_over() -> None:
    text = f"---\napiVersion: v1\nkind: ConfigMap\n---\n---\n{SCHEDULE}"
    found = list(parse_documents(text, "x.yaml"))
    assert [d.source for d in found if d.other is None] == ["x.yaml#3"]
    assert [(d.source, d.other) for d in found if d.other] == [
        ("x.yaml#1", "apiVersion: v1, kind: ConfigMap")
    ]


def test_yaml_syntax_error_names_the_line() -> None:
    [doc] = parse_documents("apiVersion: beatkeeper.io/v1alpha1\nspec: [unclosed\n", "bad.yaml")
    assert doc.problem is not None
    assert "YAML syntax error at line 3" in doc.problem.message or "line 2" in doc.problem.message


def test_duplicate_key_is_an_error_not_a_silent_overwrite() -> None:
    [doc] = parse_documents(f"{SCHEDULE}kind: Schedule\n", "dup.yaml")
    assert doc.problem is not None
    assert "duplicate key 'kind'" in doc.problem.message
    assert "line 4" in doc.problem.message


def test_missing_file_is_one_problem(tmp_path: Path) -> None:
    [doc] = read_documents(tmp_path / "nope.yaml")
    assert doc.problem is not None
    assert doc.problem.message == "cannot read: no such file"


def test_folders_are_searched_recursively_in_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    for name in ("b/z.yaml", "a.yml", "c.json", "notes.txt"):
        (tmp_path / name).write_text("{}")
    found = [p.relative_to(tmp_path).as_posix() for p in manifest_files([tmp_path])]
    assert found == ["a.yml", "b/z.yaml", "c.json"]


def test_documents_before_a_syntax_error_are_still_read() -> None:
    docs = list(parse_documents(f"{SCHEDULE}---\n{SCHEDULE}---\nkind: [broken\n", "s.yaml"))
    assert [d.source for d in docs] == ["s.yaml#1", "s.yaml#2", "s.yaml#3"]
    assert docs[2].problem is not None
    assert docs[0].content is not None
