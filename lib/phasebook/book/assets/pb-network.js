// The Paper Network page: draws the graph embedded in #pb-graph with vis-network (served from
// _static, no network access), with a legend, a search box, filters by kind, a neighbours panel
// and a second layout that places papers by year. Clicking a node opens its page.
(function () {
  "use strict";
  const app = document.getElementById("pb-network-app");
  const source = document.getElementById("pb-graph");
  if (!app || !source || typeof vis === "undefined") return;
  const data = JSON.parse(source.textContent);
  const ui = data.ui;
  const STYLE = {
    home: { color: "#4c4c4c", shape: "star" },
    essay: { color: "#1f77b4", shape: "dot" },
    note: { color: "#2ca02c", shape: "dot" },
    topic: { color: "#9467bd", shape: "diamond" },
    reference: { color: "#7f7f7f", shape: "square" },
    experiment: { color: "#d62728", shape: "triangle" },
    paper: { color: "#ff7f0e", shape: "dot" },
  };
  const EDGE_STYLE = {
    cites: { color: "#ff7f0e", dashes: false },
    links: { color: "#1f77b4", dashes: [4, 4] },
    tests: { color: "#d62728", dashes: false, width: 2 },
  };

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    (children || []).forEach((c) => node.append(c));
    return node;
  }

  // Controls: search, kind filters with the legend, layout switch; then canvas and neighbours.
  const search = el("input", { type: "search", placeholder: ui.search, class: "pb-network-search",
                               "aria-label": ui.search });
  const legend = el("div", { class: "pb-network-legend" });
  const shown = new Set(Object.keys(data.kinds));
  Object.entries(data.kinds).forEach(([kind, name]) => {
    if (!data.nodes.some((n) => n.kind === kind)) return;
    const box = el("input", { type: "checkbox", "data-kind": kind, checked: "" });
    box.addEventListener("change", () => {
      box.checked ? shown.add(kind) : shown.delete(kind);
      view.refresh();
    });
    const swatch = el("span", { class: "pb-swatch", style: `background:${STYLE[kind].color}` });
    legend.append(el("label", { class: "pb-legend-item" }, [box, swatch, name]));
  });
  Object.entries(data.edgeKinds).forEach(([kind, name]) => {
    const line = el("span", { class: "pb-edge-swatch",
                              style: `border-top:2px ${EDGE_STYLE[kind].dashes ? "dashed" : "solid"} ${EDGE_STYLE[kind].color}` });
    legend.append(el("span", { class: "pb-legend-item" }, [line, name]));
  });
  const layout = el("button", { type: "button", class: "pb-network-layout" }, [ui.layout_time]);
  const canvas = el("div", { class: "pb-network-canvas", id: "pb-network-canvas" });
  const panel = el("div", { class: "pb-network-panel" }, [el("p", {}, [ui.hover])]);
  app.append(el("div", { class: "pb-network-controls" }, [search, layout]), legend,
             el("div", { class: "pb-network-body" }, [canvas, panel]));

  // Papers are labelled "Author year" (their full title shows on hover and in the panel).
  const shortLabel = (n) => n.kind === "paper" ? n.label.split(": ")[0]
    : n.label.length > 40 ? n.label.slice(0, 38) + "…" : n.label;
  const nodes = new vis.DataSet(data.nodes.map((n) => ({
    id: n.id, label: shortLabel(n), title: n.label, kind: n.kind, href: n.href, year: n.year,
    color: STYLE[n.kind].color, shape: STYLE[n.kind].shape, size: n.kind === "paper" ? 7 : 12,
    font: { color: "#222222", size: n.kind === "paper" ? 11 : 13 },
  })));
  const edges = new vis.DataSet(data.edges.map((e, i) => ({
    id: i, from: e.from, to: e.to, kind: e.kind, arrows: "to", title: e.label || data.edgeKinds[e.kind],
    color: { color: EDGE_STYLE[e.kind].color }, dashes: EDGE_STYLE[e.kind].dashes, width: EDGE_STYLE[e.kind].width || 1,
  })));
  const view = new vis.DataView(nodes, { filter: (n) => shown.has(n.kind) });
  const network = new vis.Network(canvas, { nodes: view, edges: edges }, {
    physics: { stabilization: { iterations: 200 }, barnesHut: { springLength: 120 } },
    interaction: { hover: true, tooltipDelay: 150 },
  });
  window.pbNetwork = network; // for the site tests: node positions, selection

  function neighbours(id) {
    const rows = [];
    edges.forEach((e) => {
      if (e.from === id || e.to === id) {
        const other = nodes.get(e.from === id ? e.to : e.from);
        const verb = data.edgeKinds[e.kind];
        rows.push({ other, text: e.from === id ? `→ ${verb}` : `← ${verb}` });
      }
    });
    return rows;
  }
  function showPanel(id) {
    const node = nodes.get(id);
    panel.replaceChildren(el("p", { class: "pb-network-panel-title" },
                             [el("a", { href: node.href }, [node.title])]),
                          el("p", {}, [`${data.kinds[node.kind]} · ${ui.neighbours}`]));
    const list = el("ul", {});
    neighbours(id).forEach(({ other, text }) => {
      list.append(el("li", {}, [`${text} `, el("a", { href: other.href, "data-node": other.id }, [other.title])]));
    });
    panel.append(list);
  }
  network.on("hoverNode", (p) => showPanel(p.node));
  network.on("click", (p) => {
    if (p.nodes.length) window.location.href = nodes.get(p.nodes[0]).href;
  });

  // Search: select the nodes whose label contains the text (any script), focus the first.
  search.addEventListener("input", () => {
    const q = search.value.trim().toLowerCase();
    if (!q) { network.unselectAll(); return; }
    const hits = data.nodes.filter((n) => shown.has(n.kind) && n.label.toLowerCase().includes(q)).map((n) => n.id);
    network.selectNodes(hits);
    if (hits.length) { network.focus(hits[0], { scale: 1.2, animation: false }); showPanel(hits[0]); }
    else panel.replaceChildren(el("p", {}, [ui.no_match]));
  });

  // The time axis: papers fixed at x by year, everything else free to settle around them.
  const years = data.nodes.filter((n) => n.year).map((n) => n.year);
  const low = Math.min(...years), high = Math.max(...years);
  let byYear = false;
  layout.addEventListener("click", () => {
    byYear = !byYear;
    layout.textContent = byYear ? ui.layout_graph : ui.layout_time;
    nodes.update(data.nodes.filter((n) => n.year).map((n) => byYear
      ? { id: n.id, x: (n.year - low) * (1600 / Math.max(1, high - low)) - 800, fixed: { x: true, y: false } }
      : { id: n.id, fixed: false }));
    network.stabilize(100);
  });
})();
