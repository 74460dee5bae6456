"""The quarterly report as one self-contained HTML page: the Markdown's content as HTML,
headings with ids (#production-feedback, #alias-history, #training-loss, ...), plots inlined
as data URIs, and the training loss of every version drawn as an SVG chart by a small
script from the numbers embedded in the page (the PNG stays as the no-script fallback)."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

STYLE = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse;margin:.5em 0}"
         "td,th{border:1px solid #ccc;padding:3px 6px;font-size:90%}.ok{color:#166534}.no{color:#b91c1c}"
         "img{max-width:100%}.stale{background:#fef3c7;border:2px solid #b45309;padding:.6em 1em;font-weight:bold}"
         "#loss-chart svg{max-width:100%;height:auto;font-size:11px}")
LOSS_PLOT = "training_loss.png"
# draws #loss-chart from #loss-data: one <g class="loss-series" data-version=...> per version,
# a point for every logged loss (a version that logged one loss still shows), a legend entry each
LOSS_SCRIPT = r"""
(function () {
  var data = JSON.parse(document.getElementById("loss-data").textContent);
  var fig = document.getElementById("loss-chart");
  var esc = function (s) { return String(s).replace(/[&<>"]/g, function (c) {
    return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; }); };
  var W = 680, H = 280, L = 56, R = 190, T = 12, B = 40, pts = [];
  data.series.forEach(function (s) { s.points.forEach(function (p) { pts.push(p); }); });
  if (!pts.length) { fig.insertAdjacentHTML("afterbegin", "<p>No version logged a training loss.</p>"); return; }
  var xs = pts.map(function (p) { return p[0]; }), ys = pts.map(function (p) { return p[1]; });
  var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
  var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
  if (x1 === x0) { x1 = x0 + 1; } if (y1 === y0) { y1 = y0 + 1; }
  var sx = function (x) { return (L + (x - x0) / (x1 - x0) * (W - L - R)).toFixed(1); };
  var sy = function (y) { return (T + (1 - (y - y0) / (y1 - y0)) * (H - T - B)).toFixed(1); };
  var colors = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#be185d"];
  var svg = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ' + W + " " + H + '" width="' + W +
    '" height="' + H + '" role="img" aria-label="Training loss of every version">' +
    '<line x1="' + L + '" y1="' + (H - B) + '" x2="' + (W - R) + '" y2="' + (H - B) + '" stroke="#555"/>' +
    '<line x1="' + L + '" y1="' + T + '" x2="' + L + '" y2="' + (H - B) + '" stroke="#555"/>' +
    '<text x="' + (L - 4) + '" y="' + (T + 8) + '" text-anchor="end">' + y1.toFixed(2) + "</text>" +
    '<text x="' + (L - 4) + '" y="' + (H - B) + '" text-anchor="end">' + y0.toFixed(2) + "</text>" +
    '<text x="' + L + '" y="' + (H - B + 14) + '">' + x0 + "</text>" +
    '<text x="' + (W - R) + '" y="' + (H - B + 14) + '" text-anchor="end">' + x1 + "</text>" +
    '<text x="' + ((L + W - R) / 2) + '" y="' + (H - 6) + '" text-anchor="middle">' + esc(data.x) + "</text>" +
    '<text transform="rotate(-90)" x="' + (-(T + H - B) / 2) + '" y="14" text-anchor="middle">training loss</text>';
  data.series.forEach(function (s, i) {
    var c = colors[i % colors.length], n = s.points.length;
    svg += '<g class="loss-series" data-version="' + esc(s.version) + '" data-points="' + n + '">';
    if (n > 1) {
      svg += '<polyline fill="none" stroke-width="1.5" stroke="' + c + '" points="' +
        s.points.map(function (p) { return sx(p[0]) + "," + sy(p[1]); }).join(" ") + '"/>';
    }
    s.points.forEach(function (p) {
      svg += '<circle r="' + (n > 1 ? 2.5 : 4.5) + '" fill="' + c + '" cx="' + sx(p[0]) + '" cy="' + sy(p[1]) + '"/>';
    });
    svg += '<text class="legend" x="' + (W - R + 12) + '" y="' + (T + 12 + 16 * i) + '" fill="' + c + '">' +
      esc(s.version) + (s.mean_only ? " (mean only)" : n ? " (" + n + " logged)" : ": no loss logged") +
      "</text></g>";
  });
  fig.insertAdjacentHTML("afterbegin", svg + "</svg>");
})();
"""


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _loss_chart(loss: dict, img: str) -> str:
    data = json.dumps(loss).replace("<", "\\u003c")  # nothing in the numbers can close the script
    return (f'<figure id="loss-chart"><script type="application/json" id="loss-data">{data}</script>'
            f"<noscript>{img}</noscript><script>{LOSS_SCRIPT}</script>"
            "<figcaption>Training loss of every version</figcaption></figure>")


def _image(name: str, plots: dict[str, Path | None], loss: dict) -> str:
    data = base64.b64encode(next(p for p in plots.values() if p and p.name == name).read_bytes()).decode()
    img = f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
    return _loss_chart(loss, img) if name == LOSS_PLOT else img


def _table_row(line: str, first: bool) -> str:
    cells = [html.escape(c.strip().replace("\\|", "|")) for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
    tag = "th" if first else "td"
    return ("<table>" if first else "") + "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def _line(line: str, plots: dict, loss: dict) -> str | None:
    if line.startswith("!["):
        return _image(line.split("(plots/")[1].rstrip(")"), plots, loss)
    if line.startswith("#"):
        level = len(line) - len(line.lstrip("#"))
        title = line.lstrip("#").strip()
        return f'<h{level} id="{slug(title)}">{html.escape(title)}</h{level}>'
    if line.startswith("- ["):
        ok = line.startswith("- [x]")
        return f"<p class='{'ok' if ok else 'no'}'>{'✔' if ok else '✘'} {html.escape(line[6:])}</p>"
    if line.strip():
        text = re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(line))
        return f"<p>{text.replace('**', '')}</p>"
    return None


def html_page(md_text: str, plots: dict[str, Path | None], loss: dict) -> str:
    """A self-contained page: the Markdown's content as HTML, plots inlined as data URIs."""
    body, in_table = [], False
    for line in md_text.splitlines():
        if line.startswith("|"):
            if set(line) <= set("|-"):
                continue
            body.append(_table_row(line, first=not in_table))
            in_table = True
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if (out := _line(line, plots, loss)) is not None:
            body.append(out)
    if in_table:
        body.append("</table>")
    title = html.escape(md_text.splitlines()[0].lstrip("# ").strip()) if md_text else "report"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


_STALE = re.compile(r"<!--stale-->.*?<!--/stale-->", re.S)


def stale_banner(page: str, reason: str) -> str:
    """The page with a banner at the top saying it is stale and why (replacing an older one)."""
    banner = f'<!--stale--><div class="stale" id="stale">Stale: {html.escape(reason)}</div><!--/stale-->'
    page = _STALE.sub("", page)
    return page.replace("<body>", "<body>" + banner, 1)
