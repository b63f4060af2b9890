"""Packages import downward only (DESIGN §1), read from the source with ``ast``: every import of every
module under ``uer/``, ``preprocess/`` (installed as ``uer.preprocess``) and ``examples/``, at module
level and inside functions.

Ranks, low to high: ``errors`` < ``config`` (composing Hydra configs) < ``layers`` < the parts
(``embeddings``, ``encoders``, ``decoders``, ``targets``) < ``models`` < ``data`` < ``preprocess``,
``convert`` < ``generation`` < ``train`` < ``cli``, ``examples``. DESIGN puts data, convert and
generation on one level; inside it the order is fixed too: converting reads tokenizers, and
generation loads checkpoints through the one loader (``uer.convert.load_pretrained``).

A module may import its own package and any lower rank; a package of the same rank only where
:data:`SIDEWAYS` says why. A ``uer`` import inside a function is refused (no import hidden to dodge
a cycle), except in the command entry points (``uer/cli``), where an import marked ``# lazy`` keeps
``--help`` from loading torch; it must still point downward.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANKS = {
    "uer": 0,  # uer/__init__.py: imports nothing of uer
    "errors": 0,
    "config": 1,
    "layers": 2,
    "embeddings": 3, "encoders": 3, "decoders": 3, "targets": 3,
    "models": 4,
    "data": 5,
    "preprocess": 6, "convert": 6,
    "generation": 7,
    "train": 8,
    "cli": 9, "examples": 9,
}
SIDEWAYS = {
    ("decoders", "encoders"): "a decoder stacks the encoder's Transformer layers",
    ("examples", "cli"): "the recipes report bad input as the commands do (uer.cli.common.run_command)",
}
LAZY_MARK = "# lazy"
LAZY_ALLOWED = "uer/cli/"


def package_of_file(path: Path) -> str:
    """``uer/train/run.py`` -> ``train``; ``uer/errors.py`` -> ``errors``; ``uer/__init__.py`` ->
    ``uer``; ``preprocess/x.py`` -> ``preprocess``; ``examples/qa/task.py`` -> ``examples``."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts == ("uer", "__init__"):
        return "uer"
    return parts[1] if parts[0] == "uer" else parts[0]


def package_of_import(module: str) -> str | None:
    """The ranked package an absolute import names, or None for third-party modules."""
    parts = module.split(".")
    if parts[0] == "examples":
        return "examples"
    if parts[0] != "uer" or len(parts) == 1:
        return None
    return parts[1]


def imports(tree: ast.AST):
    """``(node, module name, inside a function)`` for every import in ``tree``."""
    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield child, alias.name, in_function
            elif isinstance(child, ast.ImportFrom):
                yield child, ("." * child.level) + (child.module or ""), in_function
            yield from walk(child, inside)

    yield from walk(tree, False)


def violations(path: Path, source: str) -> list[str]:
    """``file:line: import ... (why)`` for every import of ``source`` (the text of ``path``) that
    breaks the layering."""
    here = package_of_file(path)
    where = path.relative_to(ROOT).as_posix()
    lines = source.splitlines()
    found = []
    for node, module, in_function in imports(ast.parse(source, str(path))):
        text = f"{where}:{node.lineno}: {lines[node.lineno - 1].strip()}"
        if module.startswith("."):
            found.append(f"{text} (relative import; name the package)")
            continue
        target = package_of_import(module)
        if target is None:
            continue
        if target not in RANKS:
            found.append(f"{text} (package {target!r} has no rank in tests/test_layering.py)")
            continue
        if in_function and not (where.startswith(LAZY_ALLOWED) and LAZY_MARK in lines[node.lineno - 1]):
            found.append(f"{text} (import inside a function; import it at the top of the module)")
        if target == here:
            continue
        if RANKS[target] > RANKS[here]:
            found.append(f"{text} (upward: {here} is rank {RANKS[here]}, {target} rank {RANKS[target]})")
        elif RANKS[target] == RANKS[here] and (here, target) not in SIDEWAYS:
            found.append(f"{text} (sideways: {here} and {target} share rank {RANKS[here]}; not in SIDEWAYS)")
    return found


def modules() -> list[Path]:
    return sorted(p for top in ("uer", "preprocess", "examples") for p in (ROOT / top).rglob("*.py"))


def test_every_import_points_downward():
    assert len(modules()) > 100
    found = [v for path in modules() for v in violations(path, path.read_text(encoding="utf-8"))]
    assert not found, "layering broken:\n" + "\n".join(found)


def test_every_package_has_a_rank():
    packages = {package_of_file(p) for p in modules()}
    assert packages <= set(RANKS), sorted(packages - set(RANKS))


def test_the_check_catches_upward_sideways_and_hidden_imports():
    convert = ROOT / "uer" / "convert" / "api.py"
    source = ("from uer.models.build import build_model\n"  # downward: fine
              "from uer.train.checkpoint import save_checkpoint\n"  # upward
              "import uer.generation.text\n"  # upward, plain import
              "def f():\n    from uer.data.tokenizer import Tokenizer\n"  # hidden, though downward
              "from uer.preprocess.build import build_dataset\n"  # sideways, undeclared
              "from . import engine\n")  # relative
    found = violations(convert, source)
    assert [v.split(":")[1] for v in found] == ["2", "3", "5", "6", "7"], found
    assert "upward: convert is rank 6, train rank 8" in found[0]
    assert "inside a function" in found[2] and "sideways" in found[3] and "relative" in found[4]
    cli = ROOT / "uer" / "cli" / "pretrain.py"
    assert violations(cli, "def main():\n    from uer.train.run import pretrain  # lazy\n") == []
    assert "inside a function" in violations(cli, "def main():\n    from uer.train.run import pretrain\n")[0]
