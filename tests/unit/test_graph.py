"""graph.py and selection.py: deterministic order, cycles, selection syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierpool.core.graph import Graph
from tierpool.core.project import Project, load_project
from tierpool.core.selection import select_nodes
from tierpool.errors import ConfigError, CycleError

BASIC = Path(__file__).parents[1] / "fixtures" / "projects" / "basic"


@pytest.fixture(scope="module")
def basic() -> Project:
    return load_project(BASIC)


def diamond() -> Graph:
    return Graph({"b": ["a"], "c": ["a"], "d": ["b", "c"], "e": []})


def test_layers_are_sorted_and_ordered() -> None:
    assert diamond().layers() == [["a", "e"], ["b", "c"], ["d"]]
    assert diamond().topological_order() == ["a", "e", "b", "c", "d"]


def test_order_does_not_depend_on_insertion_order() -> None:
    shuffled = Graph({"e": [], "d": ["c", "b"], "c": ["a"], "b": ["a"]})
    assert shuffled.topological_order() == diamond().topological_order()


def test_parents_children_upstream_downstream() -> None:
    g = diamond()
    assert g.parents("d") == ["b", "c"]
    assert g.children("a") == ["b", "c"]
    assert g.upstream("d") == ["a", "b", "c"]
    assert g.downstream("a") == ["b", "c", "d"]
    assert g.upstream("a") == [] and g.downstream("e") == []


def test_subgraph_drops_outside_edges() -> None:
    sub = diamond().subgraph(["b", "d"])
    assert sub.nodes == ["b", "d"]
    assert sub.parents("d") == ["b"]
    assert sub.parents("b") == []


def test_cycle_error_prints_path() -> None:
    g = Graph({"a": ["c"], "b": ["a"], "c": ["b"], "x": []})
    with pytest.raises(CycleError, match=r"^dependency cycle: a -> b -> c -> a$"):
        g.topological_order()


def test_self_loop_is_a_cycle() -> None:
    assert Graph({"a": ["a"]}).find_cycle() == ["a", "a"]


def test_no_cycle() -> None:
    assert diamond().find_cycle() is None


def test_project_graph_edges(basic: Project) -> None:
    g = basic.graph()
    # Python outputs map to the Python model; the CTE named "models" still reads the seed.
    assert g.parents("priors") == ["fit_cells", "model_catalog"]
    assert g.parents("residuals") == ["models", "tier2_estimates", "tier3_measurements"]
    assert g.parents("fit_cells") == ["residuals"]
    order = g.topological_order()
    assert order.index("fit_cells") < order.index("priors")


@pytest.mark.parametrize(
    ("select", "exclude", "expected"),
    [
        (["residuals"], None, ["residuals"]),
        (["residuals+"], None, ["residuals", "fit_cells", "priors"]),
        (["+residuals"], None, ["models", "tier2_estimates", "tier3_measurements", "residuals"]),
        (["+fit_cells+"], None,
         ["models", "tier2_estimates", "tier3_measurements", "residuals", "fit_cells", "priors"]),
        (["cell_counts"], None, ["fit_cells"]),  # a Python output selects its model
        (["families models"], None, ["families", "models"]),
        (["families model_catalog"], None, ["families", "model_catalog"]),  # space: union
        (["families,+model_catalog"], None, ["families"]),  # comma: intersection (as dbt)
        (["families,model_catalog"], None, []),
        (["Residuals+"], ["priors"], ["residuals", "fit_cells"]),
        (None, ["+residuals"], ["families", "model_catalog", "fit_cells", "priors"]),
    ],
)
def test_select_nodes(basic: Project, select: list[str] | None, exclude: list[str] | None,
                      expected: list[str]) -> None:
    assert select_nodes(basic, basic.graph(), select, exclude) == expected


def test_select_everything_in_build_order(basic: Project) -> None:
    g = basic.graph()
    assert select_nodes(basic, g, None, None) == g.topological_order()
    assert len(g) == len(basic.nodes)


def test_unknown_selector_suggests_names(basic: Project) -> None:
    with pytest.raises(ConfigError, match=r"no node or table named 'residual'; did you mean residuals"):
        select_nodes(basic, basic.graph(), ["residual+"], None)
