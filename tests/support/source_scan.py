"""Static facts about the Lambda code, read with `ast` (nothing is imported or run).

- which modules a handler can load: its own folder and the shared `churnguard` package, followed
  through every import, including imports inside functions (lazy imports still run in Lambda);
- which environment variables that code reads;
- which HTTP routes it declares on Powertools resolvers and routers.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.handlers import REPO

SHARED = REPO / "shared"

ROUTE_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}
SWAGGER_DEFAULT_PATH = "/swagger"  # Powertools' enable_swagger() default


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module
    is_package: bool


@dataclass
class Program:
    """The modules one handler can load, by dotted name; `entry` is the handler's module."""

    entry: str
    modules: dict[str, Module] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.modules.values())


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _find_module(name: str, roots: list[Path]) -> tuple[Path, bool] | None:
    parts = name.split(".")
    for root in roots:
        base = root.joinpath(*parts)
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py"), False
        if (base / "__init__.py").is_file():
            return base / "__init__.py", True
    return None


def _imported_names(module: Module) -> Iterator[str]:
    """Dotted names of every module an import statement in `module` may load."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base:
                yield base
            for alias in node.names:
                # `from pkg import sub` loads the submodule pkg.sub when there is one.
                yield f"{base}.{alias.name}" if base else alias.name


def load_program(code_dir: Path, handler_module: str) -> Program:
    """The handler's module and everything it imports from its folder and from shared/."""
    roots = [code_dir, SHARED]
    program = Program(handler_module)
    pending = [handler_module]
    while pending:
        name = pending.pop()
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            dotted = ".".join(parts[:depth])
            if dotted in program.modules:
                continue
            found = _find_module(dotted, roots)
            if found is None:
                continue  # standard library or a third-party package
            path, is_package = found
            module = Module(dotted, path, parse(path), is_package)
            program.modules[dotted] = module
            pending.extend(_imported_names(module))
    return program


# ---------------------------------------------------------------- environment variables


def _is_os_environ(node: ast.expr) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr == "environ" and isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id == "environ"


def _callee_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _is_env_helper(name: str) -> bool:
    """config.py's env_str/env_int/env_bool and any `_env`-style helper built like them."""
    return name == "_env" or name.startswith(("env_", "_env_"))


def _first_string_argument(call: ast.Call, keyword: str) -> str | None:
    candidates = [*call.args[:1], *(k.value for k in call.keywords if k.arg == keyword)]
    for candidate in candidates:
        if isinstance(candidate, ast.Constant) and isinstance(candidate.value, str):
            return candidate.value
    return None


def env_reads(node: ast.AST) -> Iterator[str]:
    """Names of environment variables read anywhere under `node` with a literal name."""
    for child in ast.walk(node):
        if isinstance(child, ast.Subscript) and _is_os_environ(child.value):
            key = child.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                yield key.value
        elif isinstance(child, ast.Call):
            func = child.func
            name = _callee_name(child)
            environ_get = isinstance(func, ast.Attribute) and func.attr == "get" and _is_os_environ(func.value)
            if environ_get or name == "getenv":
                variable = _first_string_argument(child, "key")
            elif name is not None and _is_env_helper(name):
                variable = _first_string_argument(child, "name")
            else:
                continue
            if variable is not None:
                yield variable


def _referenced_identifiers(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name)
            names.add(node.name.rsplit(".", 1)[-1])
    return names


def program_env_reads(program: Program) -> dict[str, set[str]]:
    """Variable -> the modules that read it, for code this handler can run.

    A read at module level, or anywhere in the handler's own module, always counts. A read inside
    a top-level function or class elsewhere counts when a resolver or router registers it (a
    route) or it is referenced anywhere in the program, so a setting accessor that only some code
    calls (config.kms_key_id, say) is charged to the functions that call it, not to every function
    importing config.
    """
    referenced: set[str] = set()
    for module in program:
        referenced |= _referenced_identifiers(module.tree)
    reads: dict[str, set[str]] = {}
    for module in program:
        resolvers = _resolver_names(module.tree)
        for statement in module.tree.body:
            if (
                module.name != program.entry
                and isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and statement.name not in referenced
                and not any(_registered_by(d, resolvers) for d in statement.decorator_list)
            ):
                continue
            for variable in env_reads(statement):
                reads.setdefault(variable, set()).add(module.name)
    return reads


def _registered_by(decorator: ast.expr, resolvers: set[str]) -> bool:
    """`@router.get(...)`, `@app.exception_handler(...)`, `@app.not_found` and the like."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id in resolvers


# ---------------------------------------------------------------- handlers


def defines_callable(tree: ast.Module, name: str) -> bool:
    """True when the module binds `name` at top level: a def, an assignment or an import."""
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef) and statement.name == name:
            return True
        if isinstance(statement, ast.Assign | ast.AnnAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        if isinstance(statement, ast.ImportFrom) and any((a.asname or a.name) == name for a in statement.names):
            return True
    return False


# ---------------------------------------------------------------- routes


def _resolver_names(tree: ast.Module) -> set[str]:
    """Variables bound to a Powertools resolver or Router, at any depth in the module."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            factory = _callee_name(node.value)
            if factory is not None and (factory == "Router" or factory.endswith("Resolver")):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _to_template_path(rule: str) -> str:
    """Powertools writes path parameters as <name>; API Gateway as {name}."""
    return re.sub(r"<(\w+)>", r"{\1}", rule)


def _methods(call: ast.Call, attr: str) -> list[str]:
    if attr in ROUTE_METHODS:
        return [attr.upper()]
    given = [*call.args[1:2], *(k.value for k in call.keywords if k.arg == "method")]
    assert given, f"line {call.lineno}: route() without a method"
    node = given[0]
    values = node.elts if isinstance(node, ast.List | ast.Tuple) else [node]
    methods = []
    for value in values:
        assert isinstance(value, ast.Constant) and isinstance(value.value, str), (
            f"line {call.lineno}: route method is not a literal"
        )
        methods.append(value.value.upper())
    return methods


def declared_routes(program: Program) -> set[tuple[str, str]]:
    """(METHOD, /path/{param}) for every route the program declares on a resolver or router,
    plus the Swagger UI page that enable_swagger() serves."""
    routes: set[tuple[str, str]] = set()
    for module in program:
        resolvers = _resolver_names(module.tree)
        for node in ast.walk(module.tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in resolvers
            ):
                continue
            attr = node.func.attr
            where = f"{module.path.relative_to(REPO)}:{node.lineno}"
            if attr == "include_router":
                # A prefix would change every path of that router; teach this scanner before using one.
                assert not any(k.arg == "prefix" for k in node.keywords) and len(node.args) < 2, (
                    f"{where}: include_router with a prefix is not understood by the route scanner"
                )
            elif attr == "enable_swagger":
                path = next((k.value for k in node.keywords if k.arg == "path"), None)
                if path is None:
                    routes.add(("GET", SWAGGER_DEFAULT_PATH))
                else:
                    assert isinstance(path, ast.Constant) and isinstance(path.value, str), f"{where}: path not literal"
                    routes.add(("GET", path.value))
            elif attr in ROUTE_METHODS or attr == "route":
                rule = _first_string_argument(node, "rule")
                assert rule is not None, f"{where}: route path is not a literal"
                routes.update((method, _to_template_path(rule)) for method in _methods(node, attr))
    return routes
