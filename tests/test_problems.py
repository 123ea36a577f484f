"""Problem files: formats, and errors that name the file, line and field."""

import pytest

from fot.problems import ProblemFileError, load_problems


def test_jsonl_json_and_csv(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": 1, "question": "What is 2 + 2?", "answer": 4}\n\n'
                                      '{"problem": "What is 3 + 3?"}\n')
    ps = load_problems(tmp_path / "a.jsonl")
    assert [(p.id, p.question, p.answer) for p in ps] == [("1", "What is 2 + 2?", "4"), ("a-3", "What is 3 + 3?", None)]
    (tmp_path / "b.json").write_text('[{"question": "Q1", "answer": "x"}]')
    assert load_problems(tmp_path / "b.json")[0].answer == "x"
    (tmp_path / "24.csv").write_text("Rank,Puzzles,AMT (s),Solved rate\n1,1 1 4 6,5.5,95%\n")
    p = load_problems(tmp_path / "24.csv")[0]
    assert (p.id, p.question, p.answer) == ("1", "1 1 4 6", None)


@pytest.mark.parametrize("name,content,where", [
    ("empty.jsonl", "", "is empty"),
    ("bad.jsonl", '{"question": "a"}\n{"question": \n', "bad.jsonl:2: not valid JSON"),
    ("noq.jsonl", '{"question": "a"}\n{"text": "b"}\n', "noq.jsonl:2: field 'question': missing"),
    ("type.jsonl", '{"question": ["a"]}\n', "type.jsonl:1: field 'question': expected a string"),
    ("dup.jsonl", '{"id": "x", "question": "a"}\n{"id": "x", "question": "b"}\n', "duplicate id 'x'"),
    ("cols.csv", "a,b\n1,2\n", "cols.csv:1: field 'question'"),
    ("list.json", '{"question": "a"}', "must hold a list"),
])
def test_bad_files_name_file_line_and_field(tmp_path, name, content, where):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ProblemFileError) as info:
        load_problems(path)
    assert where in str(info.value)


def test_not_utf8(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"question": "a"}\n{"question": "caf\xe9"}\n')
    with pytest.raises(ProblemFileError, match=r"latin.jsonl:2: is not UTF-8"):
        load_problems(path)
