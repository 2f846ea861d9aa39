"""The wheel: built from a copy of the checkout, installed into a throwaway venv, run from elsewhere.

The throwaway venv gets the project venv's third-party packages through a
``.pth`` file (nothing is downloaded) but not its editable ``streamer``, so
the analyzer it runs can only use what the wheel carries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from streamer.analysis.model import CONFIG_NAME, KERAS_NAME, LITERT_BATCH_SIZES, MEL_BASIS_NAME, litert_name

ROOT = Path(__file__).resolve().parents[1]
# Not copied for the build: version control, environments, build and run outputs.
SKIP_TOP_LEVEL = {".git", ".venv", "build", "dist", "out", "test-artifacts", "node_modules"}
BUILD_WARNING = re.compile(r"\wWarning\b|[Dd]eprecat")  # not distutils' "warning: ... byte-compiling is disabled"
MODEL_FILES = [CONFIG_NAME, MEL_BASIS_NAME, KERAS_NAME, "MODEL_CARD.md"] + [litert_name(b) for b in LITERT_BATCH_SIZES]


def _ignore(folder: str, names: list[str]) -> set[str]:
    skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
    if Path(folder) == ROOT:
        skip |= {n for n in names if n in SKIP_TOP_LEVEL or n.startswith(".")}
    return skip


def _run(args: list[str | Path], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy (so the checkout gets no build/ folder) with the project venv's setuptools."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=_ignore)
    assert (source / "tools").is_dir() and (source / "tests").is_dir()  # so that leaving them out means something
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "--disable-pip-version-check"]
        + ["-w", tmp / "dist", source],
        cwd=tmp,
    )
    log = built.stdout + built.stderr
    assert built.returncode == 0, log[-4000:]
    # No SetuptoolsDeprecationWarning, BuildBackendWarning, ... about the configuration.
    assert [line for line in log.splitlines() if BUILD_WARNING.search(line)] == []
    (path,) = (tmp / "dist").glob("emotion_streamer-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel (no dependencies) that sees the project venv's third-party packages."""
    root = tmp_path_factory.mktemp("venv") / "v"
    made = _run([sys.executable, "-m", "venv", "--without-pip", root], cwd=root.parent)
    assert made.returncode == 0, made.stderr
    python = root / "bin" / "python"
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root)
    assert purelib.returncode == 0, purelib.stderr
    # Plain path lines: the project venv's own .pth files (its editable streamer) are not run.
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(purelib.stdout.strip()) / "project_venv.pth").write_text("".join(f"{p}\n" for p in ours))
    installed = _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index"]
        + ["--disable-pip-version-check", wheel],
        cwd=root.parent,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return root


def test_wheel_holds_the_package_its_data_and_the_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    for name in MODEL_FILES:
        assert f"streamer/models/{name}" in names
    dashboard = [p.relative_to(ROOT).as_posix() for p in (ROOT / "dashboard").rglob("*") if p.is_file()]
    assert {"dashboard/index.html", "dashboard/app.js", "dashboard/vendor/uplot/uPlot.iife.min.js"} <= set(dashboard)
    for name in dashboard:
        assert f"streamer/{name}" in names
    # Every module of the checkout: the package list in pyproject.toml is explicit.
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "streamer").rglob("*.py")}
    assert modules - names == set(), "add the missing packages to [tool.setuptools] packages in pyproject.toml"
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"streamer"}, tops
    assert not any(n.startswith(("tools/", "tests/", "streamer/tools/", "streamer/tests/")) for n in names)
    assert "call-emotions = streamer.app.cli:entry" in entry_points.splitlines()
    assert "call-emotions-analyze = streamer.analysis.files:main" in entry_points.splitlines()


def test_installed_package_runs_on_its_own_model(venv: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import json
        from importlib.resources import files

        import streamer
        from streamer.analysis.model import EmotionModel
        from streamer.outputs.http import DASHBOARD_DIR

        model = EmotionModel()
        print(json.dumps({
            "package": streamer.__file__,
            "models_resource": str(files("streamer.models").joinpath("config.json")),
            "model_dir": str(model.model_dir.resolve()),
            "backend": model.backend,
            "dashboard_dir": str(DASHBOARD_DIR.resolve()),
        }))
        """
    )
    ran = _run([venv / "bin" / "python", "-c", script], cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-4000:]
    found = json.loads(ran.stdout.strip().splitlines()[-1])
    inside = venv.resolve()
    for key in ("package", "models_resource", "model_dir", "dashboard_dir"):
        path = Path(found[key]).resolve()
        assert path.is_relative_to(inside) and not path.is_relative_to(ROOT), (key, path)
    assert Path(found["model_dir"]).name == "models"
    assert (Path(found["dashboard_dir"]) / "index.html").is_file()


def test_console_script_runs_from_anywhere(venv: Path, tmp_path: Path) -> None:
    ran = _run([venv / "bin" / "call-emotions", "--help"], cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr[-4000:]
    assert "usage" in ran.stdout.lower()


def test_installed_file_analysis_scores_a_recording(venv: Path, tmp_path: Path, speech_audio) -> None:
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "call.wav", np.tile(speech_audio, 2), 16000)
    ran = _run([venv / "bin" / "call-emotions-analyze", "call.wav", "--jsonl"], cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-4000:]
    result = json.loads(ran.stdout)
    assert result["file"] == "call.wav" and result["top"] in result["overall"]
    assert sum(w["speech"] for w in result["windows"]) >= 3
