"""Interactive figures that work offline: self-contained HTML, SVG and a few lines of plain JS.

No plotting library is loaded at view time; the data is embedded in the page.
"""

from __future__ import annotations

import html
import json

import numpy as np


def _round(a: np.ndarray, digits: int = 4) -> list:
    return np.round(np.asarray(a, dtype=float), digits).tolist()


def curve_slider(widget_id: str, x: np.ndarray, curves: np.ndarray, reference: np.ndarray,
                 points: tuple[np.ndarray, np.ndarray], *, slider_label: str,
                 reference_label: str, curve_label: str, points_label: str,
                 y_limits: tuple[float, float], shade: tuple[float, float] | None = None,
                 shade_label: str = "", start: int = 0, info: list[str] | None = None) -> str:
    """A plot of `curves[k]` over `x` with a slider choosing k; labels come translated."""
    data = {
        "x": _round(x), "curves": [_round(c) for c in curves], "ref": _round(reference),
        "px": _round(points[0]), "py": _round(points[1]), "ylim": list(y_limits),
        "shade": list(shade) if shade else None, "info": info or [],
    }
    esc = html.escape
    return f"""<div class="pb-widget" id="{widget_id}">
<div class="pb-widget-controls"><label>{esc(slider_label)}
<input type="range" min="0" max="{len(curves) - 1}" value="{start}" step="1"></label>
<output></output><span class="pb-widget-info"></span></div>
<svg viewBox="0 0 640 360" role="img" aria-label="{esc(curve_label)}"></svg>
<div class="pb-widget-legend"><span style="color:#888">━ {esc(reference_label)}</span> ·
<span style="color:#d62728">━ {esc(curve_label)}</span> ·
<span style="color:#1f77b4">● {esc(points_label)}</span>
{f'· <span style="color:#999">▮ {esc(shade_label)}</span>' if shade else ''}</div>
<script type="application/json">{json.dumps(data)}</script>
<script>
(function () {{
  const root = document.getElementById({json.dumps(widget_id)});
  const d = JSON.parse(root.querySelector('script[type="application/json"]').textContent);
  const svg = root.querySelector("svg"), input = root.querySelector("input"),
        out = root.querySelector("output"), info = root.querySelector(".pb-widget-info");
  const W = 640, H = 360, L = 40, R = 10, T = 10, B = 25, NS = "http://www.w3.org/2000/svg";
  const x0 = d.x[0], x1 = d.x[d.x.length - 1], [y0, y1] = d.ylim;
  const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = (y) => T + (1 - (Math.max(y0, Math.min(y1, y)) - y0) / (y1 - y0)) * (H - T - B);
  const el = (name, attrs) => {{
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return svg.appendChild(e);
  }};
  const path = (ys) => ys.map((y, i) => (i ? "L" : "M") + sx(d.x[i]).toFixed(1) + "," +
                                        sy(y).toFixed(1)).join("");
  if (d.shade) el("rect", {{x: sx(d.shade[0]), y: T, width: sx(d.shade[1]) - sx(d.shade[0]),
                           height: H - T - B, fill: "#eee"}});
  el("line", {{x1: L, x2: W - R, y1: sy(0), y2: sy(0), stroke: "#ccc"}});
  for (const t of [x0, (x0 + x1) / 2, x1, -1, 1])
    el("text", {{x: sx(t), y: H - 6, "font-size": 11, "text-anchor": "middle", fill: "#555"}})
      .textContent = t.toFixed(1);
  for (const t of [y0, 0, y1])
    el("text", {{x: L - 4, y: sy(t) + 4, "font-size": 11, "text-anchor": "end", fill: "#555"}})
      .textContent = t;
  el("path", {{d: path(d.ref), fill: "none", stroke: "#888", "stroke-width": 2}});
  const fit = el("path", {{fill: "none", stroke: "#d62728", "stroke-width": 2}});
  d.px.forEach((x, i) => el("circle", {{cx: sx(x), cy: sy(d.py[i]), r: 3, fill: "#1f77b4"}}));
  const draw = () => {{
    const k = +input.value;
    fit.setAttribute("d", path(d.curves[k]));
    out.textContent = k;
    info.textContent = d.info[k] || "";
  }};
  input.addEventListener("input", draw);
  draw();
}})();
</script>
</div>"""
