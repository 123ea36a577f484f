"""Extraction and grading on real-looking model outputs, and the safe expression parser."""

import pytest

from fot import expr
from fot.tasks import AIME, GSM8K, Arith, Game24, Generic, MathTask, detect_task, get_task


@pytest.mark.parametrize("text,expected", [
    ("3 + 4 = 7. So the answer is \\boxed{7}.", "7"),
    ("Step 1: 3+4 is 7\nThe answer is 7.", "7"),
    ("The final answer is: **$1,234**", "1234"),
    ("I think it is 12, no wait, 13", "13"),
    ("Result: \\boxed{-6}", "-6"),
    ("The answer is 2.50 dollars", "5/2"),
    ("So, the final answer is 2 + 7 = 9.", "9"),
    ("no number here", None),
])
def test_numeric_extraction_is_tolerant(text, expected):
    assert Arith().extract(text) == expected


def test_gsm8k_reference_format_and_grading():
    t = GSM8K()
    ref = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"
    assert t.grade("72", ref) and t.grade("72.0", ref) and not t.grade("24", ref) and not t.grade(None, ref)


def test_aime_range():
    t = AIME()
    assert t.extract("so \\boxed{033}") == "33"
    assert t.extract("so \\boxed{1200}") is None
    assert t.grade("33", "033")


@pytest.mark.parametrize("output,reference,right", [
    ("Thus $x = \\boxed{\\frac{1}{2}}$.", "0.5", True),
    ("\\boxed{\\dfrac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", True),
    ("We get \\boxed{(3, \\frac{\\pi}{2})}", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("\\boxed{\\frac{1}{3}}", "\\frac{1}{2}", False),
    ("\\boxed{x^2+2x+1}", "(x+1)^2", True),
])
def test_math_answers_with_math_verify(output, reference, right):
    t = MathTask()
    assert t.grade(t.extract(output), reference) is right


def test_math_boxed_with_nested_braces():
    assert MathTask().extract("so \\boxed{\\frac{a}{b^{2}}} done") == "\\frac{a}{b^{2}}"


@pytest.mark.parametrize("output,right", [
    ("(10 - 4) * (13 - 9) = 24 \\boxed{(10 - 4) * (13 - 9)}", True),
    ("4 * (9 + 10 - 13) = 24", True),
    ("\\boxed{4 × (9 + 10 − 13)}", True),
    ("\\boxed{4 * 6}", False),  # 6 is not one of the numbers
    ("\\boxed{(13 - 9) * (10 - 4) + 4 - 4}", False),  # a number used twice
    ("\\boxed{4 + 9 + 10 + 13}", False),  # 36
    ("I give up", False),
])
def test_game24_grading_is_exact_and_needs_no_reference(output, right):
    t = Game24()
    q = "4 9 10 13"
    assert t.grade(t.extract(output), None, q) is right
    assert t.rule_check(q, output) is right


def test_game24_rational_intermediate():
    assert Game24().grade("8 / (3 - 8 / 3)", None, "3 3 8 8")


def test_game24_equivalence_groups_any_two_solutions():
    t = Game24()
    assert t.equivalent("(10 - 4) * (13 - 9)", "4 * (9 + 10 - 13)", "4 9 10 13")
    assert not t.equivalent("(10 - 4) * (13 - 9)", "4 + 9 + 10 + 13", "4 9 10 13")


def test_generic_normalised_match():
    t = Generic()
    assert t.grade(t.extract("Final answer: The Eiffel Tower."), "eiffel tower")
    assert not t.grade("Big Ben", "eiffel tower")


@pytest.mark.parametrize("bad", ["__import__('os').system('x')", "2 ** 100", "open('f')", "1 +", "(1 + 2",
                                 "1 / 0", "a + b", "9" * 600])
def test_the_expression_parser_refuses_anything_but_arithmetic(bad):
    with pytest.raises(expr.ExprError):
        expr.parse(bad)


def test_expression_parser_values():
    assert expr.parse("(1 + 3) * 6").value == 24
    p = expr.parse("8 / (3 - 8 / 3)")
    assert p.value == 24 and sorted(p.numbers) == [3, 3, 8, 8]
    assert expr.parse("-(2 - 5)").value == 3


def test_arith_generator_is_seeded_and_correct():
    a, b = Arith.generate(20, seed=3), Arith.generate(20, seed=3)
    assert a == b and len({r["question"] for r in a}) == 20
    for r in a:
        assert Arith.looks_like(r["question"])
        assert str(expr.parse(r["question"][8:-1]).value) == r["answer"]


def test_detection():
    assert detect_task(["4 9 10 13", "1 1 4 6"], [None, None]).name == "game24"
    assert detect_task(["What is 3 + 4?"], ["7"]).name == "arith"
    assert detect_task(["Janet has ducks..."], ["She has... #### 18"]).name == "gsm8k"
    assert detect_task(["Find x."], ["\\frac{1}{2}"]).name == "math"
    assert detect_task(["Who wrote Hamlet?"], ["Shakespeare"]).name == "generic"
    with pytest.raises(ValueError, match="unknown task"):
        get_task("chess")


@pytest.mark.parametrize("output", [
    "\\boxed{(1+2+3)*4^2}", "\\boxed{(1+2+3)*4²}", "\\boxed{(1+2+3)*4½}", "\\boxed{(1+2+3)*4!}",
    "So (1+2+3)*4^2 = 24", "(1+2+3)*4² = 24", "(1 + 2 + 3) * 4! = 24"])
def test_game24_never_reads_a_prefix_of_something_longer(output):
    assert not Game24().grade(Game24().extract(output), None, "1 2 3 4")


@pytest.mark.parametrize("output", [
    "\\boxed{4 \\times 3 \\times 2 \\times 1}", "\\boxed{(1 + 2 + 3) \\cdot 4}", "\\boxed{(4 \\div 1) \\times 3 \\times 2}",
    "\\boxed{\\left( 1 + 2 + 3 \\right) \\times 4}", "\\boxed{\\frac{4 \\cdot 3 \\cdot 2}{1}}",
    "$\\boxed{(3 + 1) \\times (2 + 4)}$", "So the answer is (1+2+3)*4 = 24.", "Answer: **(1 + 2 + 3) * 4** = 24"])
def test_game24_reads_the_latex_models_write(output):
    assert Game24().grade(Game24().extract(output), None, "1 2 3 4")


def test_game24_huge_numbers_are_refused_not_crashed_on():
    q = "5" * 5000 + " 1 2 3"
    t = Game24()
    assert t.validate(q) and not t.solves("1 + 2", q) and not t.grade("(1+2+3)*4", None, q)
    assert t.rule_check(q, "\\boxed{1 + 2}") is None  # not a puzzle it can judge
    assert t.extract("\\boxed{" + "9" * 5000 + " - 1}") is None
    assert t.validate("4 7 8 8") is None and t.validate("4 7 8") and t.validate("four seven eight eight")


def test_each_task_caps_answers_to_fit_its_solutions():
    caps = {name: cls().answer_max_tokens for name, cls in
            (("arith", Arith), ("gsm8k", GSM8K), ("math", MathTask), ("aime", AIME), ("game24", Game24))}
    assert caps["math"] >= 1024 and caps["aime"] >= 1024 and caps["gsm8k"] >= 512
    assert caps["arith"] < caps["gsm8k"]


# ---- replies from a backend that ignores max_tokens (issue 21) ---------------------------------------

import re  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fot.forest import BEST  # noqa: E402
from fot.tasks import TASKS, final_answer  # noqa: E402
from fot.tasks.base import MAX_EXAMINED, examined, extract_boxed  # noqa: E402
from fot.verifiers import MAX_SCORE_LINE, SCORE_LINE, parse_score  # noqa: E402

# The patterns as they were before issue 21, kept as oracles: same answers on replies they could read in time.
OLD_SIDE = re.compile(r"([^=]*?)=\s*24(?!\d|\.\d)")
OLD_EXPR_TAIL = re.compile(r"[\d\s+\-*/×÷−()]+$")
OLD_SCORE_LINE = re.compile(
    r"^[\s*#>_\[]*score[\s*\]_]*[:=]?[\s*_]*([+-]?\d+(?:\.\d+)?)[\s*_]*(?:/\s*100|out of 100)?[\s*_.]*$", re.I)
OLD_BEST = re.compile(r"best\s*[:=]?\s*(?:candidate\s*)?(\d+)", re.I)


def old_game24_extract(text: str) -> str | None:
    t = Game24()
    b = extract_boxed(text)
    if b is not None:
        return t._whole(b.split("=")[0])
    for line in reversed(text.splitlines()):
        for m in reversed(list(OLD_SIDE.finditer(line.replace("**", "")))):
            lhs = expr.from_latex(m.group(1)) if "\\" in m.group(1) else m.group(1)
            run = OLD_EXPR_TAIL.search(lhs)
            if run is None or not re.search(r"\d\s*[-+*/×÷−]", run.group()):
                continue
            before = lhs[: run.start()].rstrip()
            if before and not (before[-1].isalpha() or before[-1] in ":,;"):
                continue
            got = t._whole(run.group())
            if got is not None:
                return got
    return None


REPLY_PARTS = ["4", "7", "8", "13", "24", " ", "  ", "\n", "=", "= 24", "=24", "= 240", "+", "-", "*", "/", "(", ")",
               "×", "−", "**", "^2", "!", "x", "So ", "Answer: ", "the answer is ", "\\boxed{", "}", "\\times ",
               "\\frac{", "}{", "$", ":", ",", ".", "Score: ", "best ", "candidate "]
replies = st.lists(st.sampled_from(REPLY_PARTS), max_size=60).map("".join)


@settings(max_examples=400, deadline=None)
@given(replies)
def test_game24_extraction_reads_what_it_read_before(text):
    try:
        before = old_game24_extract(text)
    except expr.ExprError:  # a long LaTeX side raised out of extract before; now it is skipped
        return
    assert Game24().extract(text) == before


@settings(max_examples=400, deadline=None)
@given(replies)
def test_score_and_expert_patterns_read_what_they_read_before(text):
    for line in text.splitlines():
        line = line.strip()
        old, new = OLD_SCORE_LINE.match(line), SCORE_LINE.match(line)
        assert (old and old.group(1)) == (new and new.group(1))
    assert OLD_BEST.findall(text) == BEST.findall(text)


def hostile_replies() -> dict[str, str]:
    """The replies of the issue, each 100 KB or so, ending without a readable answer."""
    return {"1+1a": "1+1a" * 25_000, "nested parentheses": "(" * 40_000 + "1" + ")" * 39_997 + "= 5",
            "no = 24": "1 " * 50_000 + "= 5", "long LaTeX side": "\\times " * 15_000 + "= 24",
            "digits and commas": "1," * 50_000, "open boxes": "\\boxed{" * 15_000}


@pytest.mark.parametrize("name", TASKS)
def test_every_task_reads_only_the_end_of_a_reply(name):
    """What lies before the last MAX_EXAMINED characters is never read: an answer there does not count,
    so a reply of any length costs at most that much work (and every scan is linear besides)."""
    task = TASKS[name]()
    tail = "\n" + "still working on it\n" * (MAX_EXAMINED // 20 + 1)
    assert len(tail) > MAX_EXAMINED
    head = "\\boxed{(4 + 8) * (8 - 7) * 2}\nThe answer is 17.\n(13 - 7) * 4 = 24\n"
    read = task.extract(head + "still working on it\n")
    assert read is not None and read != task.extract(tail)  # the head has an answer, read when the reply is short
    for ending in ("", "\nThe answer is \\boxed{5}", "\n(13 - 7) * 4 = 24"):
        assert task.extract(head + tail + ending) == task.extract(tail + ending), ending
        assert final_answer(task, head + tail + ending, False) == final_answer(task, tail + ending, False)
    for reply in hostile_replies().values():
        assert task.extract(reply) in (None, task.extract(examined(reply)))


def test_hostile_game24_replies_are_read_not_crashed_on():
    t = Game24()
    for name, reply in hostile_replies().items():
        assert t.extract(reply) is None, name
        assert t.rule_check("4 7 8 13", reply) is False, name
        assert t.extract(reply + "\nSo (13 - 7) * 4 = 24") == "(13 - 7) * 4", name
    assert t.extract("\\times " * 200 + "= 24") is None  # a side too long for the LaTeX reader: skipped, no ExprError
    assert examined("x" * (3 * MAX_EXAMINED)) == "x" * MAX_EXAMINED  # one long line: its end
    assert examined("a\n" + "b" * (MAX_EXAMINED - 1)) == "b" * (MAX_EXAMINED - 1)  # from a line start


def test_a_score_line_longer_than_any_score_line_is_not_read():
    assert parse_score("**Score:** 85") == 85
    assert parse_score("Score: 85" + " " * 1000) == 85  # trailing blanks are not the line
    assert parse_score("*" * MAX_SCORE_LINE + " Score: 85") is None
    assert parse_score("Score" + " " * 100_000 + "x\nScore: 12") == 12
