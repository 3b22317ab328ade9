"""The layering of sim/ (docs/architecture.md): who may import the Mesa model, no import cycles,
no rule written twice, and cheap imports of the configuration."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from .conftest import REPO

SIM = REPO / "sim"

#: The model's own layer and the helpers that run it; every other module of sim/ works on
#: configurations, rules and tables, so that theories and sweeps never load the engine.
MAY_IMPORT_MODEL = {"sim/model.py", "sim/agents.py", "sim/api.py"}

#: Block length that counts as a repeat, and the deliberate twins: each compiled kernel restates
#: its rule in sim/rules.py line by line, which tests/test_engine.py checks.
BLOCK = 6
TWINS = {frozenset({"sim/kernels.py", "sim/rules.py"})}


def _modules() -> list[Path]:
    return sorted(p for p in SIM.rglob("*.py") if "__pycache__" not in p.parts)


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _imports(path: Path, *, top_level: bool = False) -> set[str]:
    """Modules of ``sim`` that ``path`` imports at run time (``TYPE_CHECKING`` blocks excluded);
    with ``top_level``, only those imported when the module itself is imported."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
        if top_level and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("sim"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sim"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_only_the_model_layer_and_the_run_helpers_import_the_model():
    offenders = {
        _rel(p): sorted(i for i in _imports(p) if i == "sim.model" or i.startswith("sim.model."))
        for p in _modules()
        if _rel(p) not in MAY_IMPORT_MODEL
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_rules_import_no_engine_theory_or_sweep():
    allowed = {"sim.config", "sim.config.CHANNELS"}
    assert _imports(SIM / "rules.py") <= allowed
    assert _imports(SIM / "strategies.py") == set()


def test_sim_has_no_import_cycles():
    """Between the modules' top-level imports (an import inside a function runs later, on use)."""
    names = {_rel(p)[:-3].replace("/", ".").removesuffix(".__init__"): p for p in _modules()}
    graph = {
        name: {i if i in names else i.rsplit(".", 1)[0] for i in _imports(path, top_level=True)}
        & set(names)
        for name, path in names.items()
    }
    for name in graph:  # the package's lazy re-exports are not import edges of its modules
        graph[name].discard("sim")
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, trail: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph[node] - {node}):
            if state.get(nxt) == 1:
                cycle.extend([*trail, node, nxt])
                return True
            if nxt not in state and visit(nxt, [*trail, node]):
                return True
        state[node] = 2
        return False

    for node in sorted(graph):
        if node not in state and visit(node, []):
            break
    assert cycle == []


def _blocks(path: Path) -> list[tuple[tuple[str, ...], int]]:
    """Every run of BLOCK consecutive code lines (blank and comment lines dropped, whitespace
    stripped) with its first line number."""
    lines = [
        (number, text.strip())
        for number, text in enumerate(path.read_text().splitlines(), 1)
        if text.strip() and not text.strip().startswith("#")
    ]
    return [
        (tuple(t for _, t in lines[i : i + BLOCK]), lines[i][0])
        for i in range(len(lines) - BLOCK + 1)
    ]


def test_no_block_of_code_is_written_twice_in_sim():
    seen: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for path in _modules():
        for block, line in _blocks(path):
            if sum(len(t) > 3 for t in block) >= BLOCK - 1:  # not just brackets
                seen[block].append(f"{_rel(path)}:{line}")
    repeats = []
    for places in seen.values():
        files = frozenset(p.split(":")[0] for p in places)
        if len(places) > 1 and not (len(files) == 2 and files in TWINS):
            repeats.append(places)
    assert repeats == [], "\n".join(" ~ ".join(p) for p in repeats[:10])


def test_importing_the_configuration_does_not_load_the_engine():
    code = (
        "import sys; from sim.config import Config; Config(); heavy = ('numba', 'mesa', "
        "'sim.model', 'sim.kernels'); print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_worked_example_of_docs_architecture_runs(tmp_path):
    text = (REPO / "docs" / "architecture.md").read_text()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    proc = subprocess.run(
        [sys.executable, "-c", block],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("net alignment after 30 steps: ")


def test_a_registered_strategy_is_a_valid_rule_and_changes_the_run():
    """The configuration takes its rule names from the live registries, and the engine
    dispatches on the strategy's properties: a new class is enough for a new combination."""
    from sim import strategies
    from sim.api import run_model

    class EffortOnly(strategies.AdversaryStrategy):
        name = "test_effort_only"
        best_responds = True  # Roth-Erev's effort rule without its channel learning

    strategies.adversary_strategy(EffortOnly)
    try:
        params = dict(steps=15, seed=2, n_labs=4, n_adversaries=80)
        new = run_model(**params, adversary_rule="test_effort_only")
        same = run_model(**params, adversary_rule="best_response")
        other = run_model(**params, adversary_rule="roth_erev")
    finally:
        del strategies.ADVERSARY_STRATEGIES["test_effort_only"]
    # the same properties as best_response: the same run; not roth_erev's
    assert all((new[k] == same[k]).all() for k in new)
    assert any((new[k] != other[k]).any() for k in new)
