"""The Paper Network: one graph of the book's papers, notes, essays, topics and experiments.

Nodes are the pages of the table of contents, the experiments (notebooks) and the papers of
the bibliography that some page cites. Edges are typed:

- cites: a page's front matter lists a BibTeX key (page → paper);
- links: a page's front matter lists another page or an experiment (page → page);
- tests: an experiment tests a claim a page states (experiment → page), labelled with the claim.

The same graph gives every page its "Connected pages" list (backlinks included) and the
bibliography its "cited by" lists; the network page draws it with vis-network, whose JavaScript
comes from the pyvis wheel installed from the package registry and is served from the site.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phasebook.book.notebooks import load_notebook
from phasebook.book.pages import PageSet, claim_ids
from phasebook.config import Book
from phasebook.i18n import N_, gettext

KIND_NAMES = {"home": N_("Home"), "essay": N_("Essay"), "note": N_("Note"), "topic": N_("Topic"),
              "reference": N_("Reference"), "experiment": N_("Experiment"), "paper": N_("Paper")}
EDGE_NAMES = {"cites": N_("cites"), "links": N_("links to"), "tests": N_("tests a claim of")}
NETWORK_TITLE = N_("Paper Network")
# How a page's "Connected pages" list words each neighbour: (direction, edge kind) -> sentence.
RELATIONS = {("out", "cites"): N_("This page cites {node}"),
             ("out", "links"): N_("This page links to {node}"),
             ("out", "tests"): N_("This experiment tests a claim of {node}"),
             ("in", "cites"): N_("{node} cites this page"),
             ("in", "links"): N_("{node} links to this page"),
             ("in", "tests"): N_("{node} tests a claim of this page")}
NETWORK_PAGE = "network"


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    title: dict[str, str]
    year: int | None = None

    def href(self) -> str:
        """The node's page, relative to a language's site root."""
        if self.kind == "paper":
            return f"bibliography.html#{paper_anchor(self.id)}"
        return f"{self.id}.html"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str
    label: dict[str, str] | None = None  # the claim, for "tests" edges


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)

    def neighbours(self, node_id: str) -> list[tuple[str, Edge, Node]]:
        """(direction "out" | "in", edge, other node) for every edge touching `node_id`."""
        out = []
        for e in self.edges:
            if e.source == node_id:
                out.append(("out", e, self.nodes[e.target]))
            elif e.target == node_id:
                out.append(("in", e, self.nodes[e.source]))
        return out


def paper_id(key: str) -> str:
    return f"paper:{key}"


def paper_anchor(node_id: str) -> str:
    return "paper-" + re.sub(r"[^a-z0-9]+", "-", node_id.removeprefix("paper:").lower())


def _papers(book: Book) -> dict[str, Node]:
    from pybtex.database import parse_file

    path = book.root / book.bibliography if book.bibliography else None
    if path is None or not path.is_file():
        return {}
    out = {}
    for key, entry in parse_file(str(path)).entries.items():
        title = re.sub(r"[{}]", "", entry.fields.get("title", key))
        year = entry.fields.get("year")
        authors = entry.persons.get("author", [])
        first = " ".join(authors[0].last_names) if authors else ""
        label = f"{first} {year}: {title}" if first and year else title
        out[paper_id(key)] = Node(paper_id(key), "paper", {lang: label for lang in book.languages},
                                  int(year) if year and str(year).isdigit() else None)
    return out


def build_graph(book: Book, pages: PageSet) -> Graph:
    """The graph of the pages in the table of contents, the experiments and the cited papers."""
    graph = Graph()
    for page_id in book.pages:
        meta = pages.meta(page_id)
        titles = meta.get("title") if isinstance(meta.get("title"), dict) else {}
        graph.nodes[page_id] = Node(page_id, str(meta.get("kind", "topic")),
                                    {lang: str(titles.get(lang, page_id)) for lang in book.languages})
    for name in book.notebooks:  # each notebook source read once, for all its titles
        source = load_notebook(book.notebook_path(name), book.languages)
        graph.nodes[f"experiments/{name}"] = Node(f"experiments/{name}", "experiment",
                                                  {lang: source.title(lang) for lang in book.languages})
    papers = _papers(book)
    claims = claim_ids(book)
    for page_id in book.pages:
        meta = pages.meta(page_id)
        for key in meta.get("cites") or []:
            if paper_id(key) in papers:
                graph.nodes.setdefault(paper_id(key), papers[paper_id(key)])
                graph.edges.append(Edge(page_id, paper_id(key), "cites"))
        for target in meta.get("links") or []:
            if target in graph.nodes and target != page_id:
                graph.edges.append(Edge(page_id, target, "links"))
        for claim in meta.get("claims") or []:
            experiment = f"experiments/{claims.get(claim, {}).get('notebook')}"
            if experiment in graph.nodes:
                label = {lang: str(claims[claim].get(lang, claim)) for lang in book.languages}
                graph.edges.append(Edge(experiment, page_id, "tests", label))
    return graph


def graph_data(graph: Graph, lang: str) -> dict[str, Any]:
    """What the network page's script draws: labels and links in `lang`."""
    return {
        "nodes": [{"id": n.id, "kind": n.kind, "label": n.title[lang], "href": n.href(), "year": n.year}
                  for n in graph.nodes.values()],
        "edges": [{"from": e.source, "to": e.target, "kind": e.kind,
                   "label": e.label[lang] if e.label else None} for e in graph.edges],
        "kinds": {kind: gettext(name, lang) for kind, name in KIND_NAMES.items()},
        "edgeKinds": {kind: gettext(name, lang) for kind, name in EDGE_NAMES.items()},
        "ui": {name: gettext(text, lang) for name, text in UI.items()},
    }


UI = {"search": N_("Search the network…"), "neighbours": N_("Neighbours"),
      "hover": N_("Point at a node to list its neighbours; click it to open its page."),
      "layout_graph": N_("Graph layout"), "layout_time": N_("Papers by year"),
      "no_match": N_("No node matches.")}


def network_page(graph: Graph, lang: str) -> str:
    """The MyST source of the network page: a short introduction and the drawing."""
    data = json.dumps(graph_data(graph, lang), ensure_ascii=False).replace("</", "<\\/")
    counts = {kind: sum(1 for n in graph.nodes.values() if n.kind == kind) for kind in KIND_NAMES}
    comma = gettext(N_(", "), lang)
    kinds = comma.join(f"{gettext(KIND_NAMES[k], lang)} {n}" for k, n in counts.items() if n)
    summary = gettext(N_("{nodes} nodes and {edges} edges: {kinds}."), lang).format(
        nodes=len(graph.nodes), edges=len(graph.edges), kinds=kinds)
    intro = gettext(N_("Every paper, essay, note, topic and experiment of this book, and how they connect: "
                       "a page cites a paper, links to another page, or states a claim that an experiment "
                       "tests."), lang)
    lead = gettext(N_("{intro} {summary}"), lang).format(intro=intro, summary=summary)
    return (f"# {gettext(NETWORK_TITLE, lang)}\n\n{lead}\n\n"
            '<div id="pb-network-app" class="pb-network"></div>\n'
            f'<script type="application/json" id="pb-graph">{data}</script>\n'
            '<script src="_static/vis-network.min.js"></script>\n'
            '<script src="_static/pb-network.js"></script>\n')


def connected_section(graph: Graph, node_id: str, lang: str) -> str:
    """"Connected pages": the node's neighbours by edge kind and direction, as links (from a page
    at `node_id`'s depth). Empty when the node has none."""
    if node_id not in graph.nodes:
        return ""
    up = "../" * node_id.count("/")
    rows = []
    for direction, edge, other in sorted(graph.neighbours(node_id),
                                         key=lambda t: (t[1].kind, t[0], t[2].title[lang])):
        kind = gettext(KIND_NAMES.get(other.kind, other.kind), lang)
        kind = kind.lower() if direction == "out" else kind  # mid-sentence in English; no case in Chinese
        title = f'<a href="{up}{other.href()}">{html.escape(other.title[lang])}</a>'
        node = gettext(N_("{kind} {title}"), lang).format(kind=kind, title=title)
        # The claim in brackets, without its full stop; Chinese takes full-width brackets.
        claim = (gettext(N_(" ({claim})"), lang).format(claim=html.escape(edge.label[lang].rstrip(".。")))
                 if edge.label else "")
        rows.append(f"<li>{gettext(RELATIONS[direction, edge.kind], lang).format(node=node)}{claim}</li>")
    if not rows:
        return ""
    heading = gettext(N_("Connected pages"), lang)
    network = f'<a href="{up}{NETWORK_PAGE}.html">{html.escape(gettext(NETWORK_TITLE, lang))}</a>'
    return (f'\n\n<div class="pb-connected"><p class="pb-connected-title">{html.escape(heading)} · '
            f"{network}</p><ul>{''.join(rows)}</ul></div>\n")


def cited_by_section(graph: Graph, lang: str) -> str:
    """Every cited paper with an anchor and the pages that cite it (for the bibliography page)."""
    items = []
    papers = sorted((n for n in graph.nodes.values() if n.kind == "paper"), key=lambda n: n.title[lang])
    for paper in papers:
        citing = sorted({e.source for e in graph.edges if e.target == paper.id and e.kind == "cites"})
        links = gettext(N_(", "), lang).join(
            f'<a href="{src}.html">{html.escape(graph.nodes[src].title[lang])}</a>' for src in citing)
        items.append(f'<dt id="{paper_anchor(paper.id)}">{html.escape(paper.title[lang])}</dt>'
                     f"<dd>{gettext(N_('Cited by'), lang)}: {links}</dd>")
    if not items:
        return ""
    heading = gettext(N_("Papers and the pages that cite them"), lang)
    return f"\n\n## {heading}\n\n<dl class=\"pb-papers\">{''.join(items)}</dl>\n"


def vis_assets() -> dict[str, Path]:
    """The vis-network files of the installed pyvis wheel, by their name under _static/."""
    import pyvis

    folder = Path(pyvis.__file__).resolve().parent / "lib" / "vis-9.1.2"
    return {name: folder / name for name in ("vis-network.min.js", "vis-network.css")}
