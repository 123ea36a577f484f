"""Problem files: formats, and errors that name the file, line and field."""

import csv

import pytest

from fot.tasks.problems import MAX_QUESTION_CHARS, ProblemFileError, load_problems


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


LONG_INT = "1" + "2" * 4999  # past Python's 4300-digit int/str limit


def test_csv_question_up_to_the_limit_loads(tmp_path):
    path = tmp_path / "long.csv"  # past the csv module's own 131,072-character field limit
    path.write_text(f"id,question\n1,{'x' * MAX_QUESTION_CHARS}\n")
    assert len(load_problems(path)[0].question) == MAX_QUESTION_CHARS


def test_csv_long_integer_columns_load_as_text(tmp_path):
    path = tmp_path / "digits.csv"
    path.write_text(f"id,question,answer\n{LONG_INT},What is 2+2?,{LONG_INT}\n")
    p = load_problems(path)[0]
    assert (p.id, p.answer) == (LONG_INT, LONG_INT)


@pytest.mark.parametrize("name,content,where", [
    ("huge.csv", f"id,question\n0,ok\n1,{'x' * (MAX_QUESTION_CHARS + 50_000)}\n",
     "huge.csv:3: field 'question': is 250000 characters, over the limit"),
    ("cr.csv", "id,question\n0,ok\n1,a\rb\n", "cr.csv:3: not valid CSV"),
    ("deep.json", "[" * 100_000 + "]" * 100_000, "deep.json:1: lists or objects nested too deeply"),
    ("deep.jsonl", '{"question": "a"}\n' + "[" * 100_000 + "]" * 100_000 + "\n",
     "deep.jsonl:2: lists or objects nested too deeply"),
    ("deepq.jsonl", '{"question": ' + "[" * 100_000 + "]" * 100_000 + "}\n",
     "deepq.jsonl:1: lists or objects nested too deeply"),
    ("id.jsonl", f'{{"question": "a"}}\n{{"id": {LONG_INT}, "question": "What is 2+2?"}}\n',
     "id.jsonl:2: field 'id': is an integer of 5000 digits"),
    ("answer.jsonl", f'{{"question": "What is 2+2?", "answer": -{LONG_INT}}}\n',
     "answer.jsonl:1: field 'answer': is an integer of 5000 digits"),
    ("id.json", f'[{{"question": "a"}}, {{"id": {LONG_INT}, "question": "What is 2+2?"}}]',
     "id.json:2: field 'id': is an integer of 5000 digits"),
])
def test_hostile_files_name_file_line_and_field(tmp_path, name, content, where):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ProblemFileError) as info:
        load_problems(path)
    assert where in str(info.value)


def test_csv_field_limit_is_put_back(tmp_path):
    before = csv.field_size_limit()
    path = tmp_path / "long.csv"
    path.write_text(f"id,question\n1,{'x' * 150_000}\n")
    load_problems(path)
    assert csv.field_size_limit() == before
