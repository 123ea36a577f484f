"""The command line is generated from the settings dataclasses (fot/config.py, fot/options.py): every
setting is an option on every command that takes it, a TOML file reads the same names, the command line
wins, and a bad value is refused naming its option."""

import dataclasses

import pytest

from fot.config import BackendSettings, RunSettings, SearchConfig, flag_of
from fot.solve import main, parser, settings_from
from fot.serve import parser as serve_parser
from fot.serve.cli import RUN_FIELDS
from fot.sweep import SWEEP_OWNS, parser as sweep_parser
from helpers import read_rows, write_problems


def _flags(ap) -> set[str]:
    return {s for a in ap._actions for s in a.option_strings}


@pytest.mark.parametrize("cls", [SearchConfig, BackendSettings, RunSettings])
def test_every_setting_is_an_option_of_every_command_that_takes_it(cls):
    solve_flags, sweep_flags, serve_flags = _flags(parser()), _flags(sweep_parser()), _flags(serve_parser())
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli", True):
            assert flag_of(f) in solve_flags, flag_of(f)
            assert f.name in SWEEP_OWNS or flag_of(f) in sweep_flags, flag_of(f)
            assert (cls is RunSettings and f.name not in RUN_FIELDS) or flag_of(f) in serve_flags, flag_of(f)


def test_a_config_file_sets_values_and_the_command_line_wins(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('trees = 3\nseed = 7\n[search]\ninputs = ["raw", "shuffle"]\n[run]\nsamples = 5\n'
                   '[backend]\ntimeout = 9.5\n')
    args = parser().parse_args(["p.jsonl", "--sim", "--config", str(cfg), "--trees", "2", "--logprob-threshold", "none"])
    s = settings_from(args)
    assert s.search == {"trees": 2, "seed": 7, "inputs": ("raw", "shuffle"), "logprob_threshold": None}
    assert s.run.samples == 5 and s.backend.timeout == 9.5
    assert s.config().trees == 2 and s.config().rollouts == 8  # the preset (not the embedded one) under what was given


@pytest.mark.parametrize("args, words", [
    (["--uct-c", "-1"], "invalid search setting(s): c=-1.0"),
    (["--price-in", "inf"], "--price-in must be a finite number"),
    (["--inputs", "raw,nope"], "unknown inputs 'nope'"),
    (["--trees", "0"], "--trees must be >= 1"),
    (["--max-attempts", "0"], "--max-attempts must be >= 1"),
    (["--verifier", "nope"], "invalid choice: 'nope'"),
])
def test_a_bad_value_is_refused_naming_its_option(tmp_path, capsys, args, words):
    probs = write_problems(tmp_path, 1, seed=1, name="p.jsonl")
    with pytest.raises(SystemExit) as e:
        main([str(probs), "--sim", "--quiet", "--out", str(tmp_path / "o.jsonl"), *args])
    assert e.value.code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_an_unknown_key_in_a_config_file_is_refused_naming_the_file(tmp_path, capsys):
    probs, cfg = write_problems(tmp_path, 1, seed=1, name="p.jsonl"), tmp_path / "run.toml"
    cfg.write_text("[search]\ntreez = 3\n")
    with pytest.raises(SystemExit) as e:
        main([str(probs), "--sim", "--config", str(cfg)])
    assert e.value.code == 2 and f"--config {cfg}: [search] has no setting 'treez'" in capsys.readouterr().err


def test_a_search_setting_from_the_command_line_reaches_the_search_and_the_record(tmp_path):
    probs, out = write_problems(tmp_path, 2, seed=1, name="p.jsonl"), tmp_path / "o.jsonl"
    assert main([str(probs), "--sim", "--quiet", "--trees", "2", "--rollouts", "1", "--inputs", "shuffle",
                 "--temperatures", "0.3", "--uct-c", "0.5", "--out", str(out)]) == 0
    rows = read_rows(out)
    # (a second shuffle tree that would repeat the first's only reordering gets another input, and says so)
    assert all((t["input"] in ("shuffle", "raw") or "the same input as tree" in t["input_note"])
               and t["temperature"] == 0.3 for r in rows for t in r["trees"])
    assert rows[0]["run"]["c"] == 0.5 and rows[0]["run"]["inputs"] == ["shuffle"]
    # a resume with another value of it is refused, as for any recorded setting
    assert main([str(probs), "--sim", "--quiet", "--trees", "2", "--rollouts", "1", "--inputs", "shuffle",
                 "--temperatures", "0.3", "--uct-c", "0.9", "--out", str(out)]) == 2
