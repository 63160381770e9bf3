"""The Paper Network's graph: what its nodes and typed edges are, built from the pages' front matter."""

from __future__ import annotations

from phasebook.book.network import build_graph, connected_section, graph_data
from phasebook.book.pages import claim_ids, load_pages
from phasebook.config import load_book

from .conftest import ROOT


def project_graph():
    book = load_book(ROOT)
    pages = load_pages(book)
    return book, pages, build_graph(book, pages)


def test_nodes_are_the_pages_experiments_and_cited_papers():
    book, pages, graph = project_graph()
    kinds = {n.kind for n in graph.nodes.values()}
    assert {"home", "essay", "note", "topic", "experiment", "paper"} <= kinds
    assert set(book.pages) | {f"experiments/{n}" for n in book.notebooks} <= set(graph.nodes)
    cited = {key for p in book.pages for key in pages.meta(p).get("cites") or []}
    assert {n.id.removeprefix("paper:") for n in graph.nodes.values() if n.kind == "paper"} == cited


def test_edges_follow_front_matter_and_claims():
    book, pages, graph = project_graph()
    claims = claim_ids(book)
    for edge in graph.edges:
        meta = pages.meta(edge.target if edge.kind == "tests" else edge.source)
        if edge.kind == "cites":
            assert edge.target.removeprefix("paper:") in meta["cites"]
        elif edge.kind == "links":
            assert edge.target in meta["links"]
        else:  # an experiment tests a claim the target page states, and the edge says which
            stated = [c for c in meta["claims"] if f"experiments/{claims[c]['notebook']}" == edge.source]
            assert stated and edge.label["zh"] in [claims[c]["zh"] for c in stated]
    assert {e.kind for e in graph.edges} == {"cites", "links", "tests"}


def test_labels_and_backlinks_are_in_the_page_language():
    _, _, graph = project_graph()
    zh = {n["id"]: n["label"] for n in graph_data(graph, "zh")["nodes"]}
    en = {n["id"]: n["label"] for n in graph_data(graph, "en")["nodes"]}
    assert zh["essays/interpolation"] == "内插视角" and en["essays/interpolation"] == "The interpolation lens"
    assert any(e.target == "essays/interpolation" and e.kind == "links" for e in graph.edges)
    box = connected_section(graph, "essays/interpolation", "zh")
    assert "相关页面" in box and "链接到本页" in box and 'href="../network.html"' in box


def test_a_tested_claim_is_bracketed_as_each_language_brackets():
    _, _, graph = project_graph()
    zh = connected_section(graph, "experiments/cot-evaluation", "zh")
    en = connected_section(graph, "experiments/cot-evaluation", "en")
    assert "（" in zh and " (" not in zh and "。）" not in zh
    assert " (" in en and ".)" not in en
