"""The import graph of shared/churnguard: no module reaches, however indirectly, back to itself.
(The layers themselves are import-linter contracts in pyproject.toml, checked by `make lint`.)"""

from __future__ import annotations

import grimp


def test_no_module_of_churnguard_imports_itself_through_others() -> None:
    graph = grimp.build_graph("churnguard")
    cycles = [
        (module, graph.find_shortest_chain(importer=imported, imported=module))
        for module in sorted(graph.modules)
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.startswith("churnguard") and graph.chain_exists(importer=imported, imported=module)
    ]
    assert cycles == []
