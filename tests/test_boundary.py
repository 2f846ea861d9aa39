"""Each layer imports only what it may, the package has no import cycle, the core runs without edge libraries."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "streamer"
EDGE = ("sounddevice", "websockets", "aiomqtt", "tensorflow", "keras", "fastapi", "uvicorn", "librosa", "numba")
IO = {"socket", "subprocess", "multiprocessing", "asyncio", "sounddevice", "soundfile", "websockets", "aiomqtt"}
IO |= {"fastapi", "starlette", "uvicorn", "uvloop", "httpx", "prometheus_client", "tensorflow", "keras"}
IO |= {"ai_edge_litert", "onnxruntime"}

# layer -> the package's layers it may import (itself included); the app may import everything.
MAY_IMPORT = {
    "core": {"core"},
    "sources": {"core", "sources"},
    "calls.sessions": {"core", "calls.sessions", "calls.call", "calls.desk"},
    "calls": {"core", "sources", "calls"},
    "analysis": {"core", "sources", "analysis", "resources"},
    "workers": {"core", "sources", "analysis", "workers"},
    "outputs": {"core", "analysis.decode", "outputs", "resources"},
    "training": {"core", "analysis", "training"},
}
NO_IO = {"core": IO - {"asyncio"}, "calls.sessions": IO}  # core.tasks supervises asyncio tasks, nothing more


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str | None:
    rest = module.removeprefix("streamer.")
    return max((layer for layer in MAY_IMPORT if rest == layer or rest.startswith(layer + ".")), key=len, default=None)


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Modules ``path`` imports (``TYPE_CHECKING`` blocks excluded; only module level if asked)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(nodes, nested: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names if node.module.startswith("streamer"))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and top_level_only:
                continue
            visit(ast.iter_child_nodes(node), nested or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree.body, False)
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer_of(m)))
def test_each_layer_imports_only_what_it_may(module):
    layer = layer_of(module)
    allowed = MAY_IMPORT[layer]
    bad = []
    for name in imports(MODULES[module]):
        if name.startswith("streamer.") and name in MODULES or name.startswith("streamer.") and name.count(".") >= 2:
            target = name.removeprefix("streamer.")
            if name not in MODULES:  # "from streamer.x import Name": judge the module
                target = target.rsplit(".", 1)[0]
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                bad.append(name)
        elif name.split(".")[0] in NO_IO.get(layer, ()):
            bad.append(name)
    assert not bad, f"{module} ({layer}) may not import {sorted(set(bad))}"


def test_tools_are_not_imported_by_the_package():
    offenders = [m for m, p in MODULES.items() if any(n.split(".")[0] == "tools" for n in imports(p))]
    assert not offenders


def test_no_import_cycle_at_module_level():
    graph = {}
    for module, path in MODULES.items():
        targets = set()
        for name in imports(path, top_level_only=True):
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module and name != "streamer":
                targets.add(name)
        graph[module] = targets
    state: dict[str, int] = {}

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (found := cycle_from(nxt, [*path, node])):
                return found
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            found = cycle_from(module, [])
            assert found is None, " -> ".join(found)


PRELUDE = textwrap.dedent(
    f"""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {EDGE!r}:
                raise ImportError(f"{{name}} is blocked in this test")
    sys.meta_path.insert(0, Block())
    """
)


def run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_core_analysis_sources_and_sessions_import_without_edge_libraries():
    core = [m for m in MODULES if layer_of(m) in ("core", "sources", "calls.sessions", "calls", "analysis", "workers")]
    core = [m for m in core if not m.startswith("streamer.calls.net")]
    proc = run_blocked(
        "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in core) + 'print("ok")'
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_file_analysis_runs_on_litert_without_tensorflow_or_librosa():
    proc = run_blocked(
        """
        import numpy as np
        from streamer.analysis.files import analyze_audio
        from streamer.analysis.model import EmotionModel
        model = EmotionModel()
        assert model.backend == "litert"
        t = np.arange(48000) / 16000
        result = analyze_audio((0.1 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), model)
        assert len(result["windows"]) == 3
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_blocker_really_blocks():
    proc = run_blocked("import tensorflow")
    assert proc.returncode != 0 and "blocked in this test" in proc.stderr


def test_the_rules_catch_a_violation(tmp_path, monkeypatch):
    """The layer check fails for a core module importing a worker or a socket (it is not vacuous)."""
    bad = tmp_path / "bad.py"
    bad.write_text("import socket\nfrom streamer.workers.thread import AnalysisWorker\n")
    monkeypatch.setitem(MODULES, "streamer.core.bad", bad)
    with pytest.raises(AssertionError, match="may not import"):
        test_each_layer_imports_only_what_it_may("streamer.core.bad")
