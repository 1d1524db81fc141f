// report.html: sorts and filters the gallery, draws a clicked image's curves. Every number is
// already in the page's HTML; this script only reorders, hides and draws.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("page-data").textContent);
  const metrics = Object.fromEntries(data.metrics.map((m) => [m.key, m]));
  const images = Object.fromEntries(data.images.map((image) => [String(image.index), image]));
  const colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

  // gallery: sort by one method's metric, filter by class and by outcome
  const gallery = document.getElementById("gallery").tBodies[0];
  const original = Array.from(gallery.rows);
  const control = (id) => document.getElementById(id);
  function value(row, method, key) {
    const v = images[row.dataset.index].values[method][key];
    return v === null || v === undefined ? null : v;
  }
  function update() {
    const key = control("sort-metric").value, method = control("sort-method").value;
    let rows = original.slice();
    if (key) {
      // best first: descending when higher is better; images without a value go last; ties keep dataset order
      const sign = (metrics[key].higher ? -1 : 1) * (control("sort-order").value === "best" ? 1 : -1);
      rows.sort((a, b) => {
        const x = value(a, method, key), y = value(b, method, key);
        if (x === null || y === null) return (x === null) - (y === null);
        return sign * (x - y);
      });
    }
    const label = control("filter-class").value, outcome = control("filter-outcome").value;
    let shown = 0;
    rows.forEach((row) => {
      const visible = (!label || row.dataset.label === label) && (!outcome || row.dataset.outcome === outcome);
      row.hidden = !visible;
      shown += visible;
      gallery.appendChild(row);
    });
    control("shown").textContent = `showing ${shown} of ${rows.length} images`;
  }
  ["sort-metric", "sort-method", "sort-order", "filter-class", "filter-outcome"].forEach((id) =>
    control(id).addEventListener("change", update));
  control("controls").hidden = false;
  update();

  // a click on an image row: its insertion and deletion curves, one line per method
  const panel = document.getElementById("image-curves");
  const svgNS = "http://www.w3.org/2000/svg";
  function element(name, attributes, text) {
    const node = document.createElementNS(svgNS, name);
    Object.entries(attributes).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function chart(image, key) {
    const width = 280, height = 200, left = 36, right = 8, top = 20, bottom = 30;
    const plotWidth = width - left - right, plotHeight = height - top - bottom;
    const svg = element("svg", {width, height, class: "curve-chart", "data-metric": key});
    const metric = metrics[key];
    svg.appendChild(element("text", {x: left, y: 13}, `${key} (${metric ? metric.label + metric.arrow : ""})`));
    svg.appendChild(element("rect", {x: left, y: top, width: plotWidth, height: plotHeight, fill: "none",
                                     stroke: "#999"}));
    [0, 0.5, 1].forEach((tick) => {
      svg.appendChild(element("text", {x: left - 4, y: top + plotHeight * (1 - tick) + 4, "text-anchor": "end"},
                              tick.toFixed(1)));
      svg.appendChild(element("text", {x: left + plotWidth * tick, y: height - 16, "text-anchor": "middle"},
                              tick.toFixed(1)));
    });
    svg.appendChild(element("text", {x: left + plotWidth / 2, y: height - 3, "text-anchor": "middle"},
                            "fraction of pixels"));
    data.methods.forEach((method, i) => {
      const curve = image.curves[method][key];
      const points = curve.map((score, step) => {
        const x = left + plotWidth * step / Math.max(1, curve.length - 1);
        const y = top + plotHeight * (1 - Math.min(1, Math.max(0, score)));
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      }).join(" ");
      svg.appendChild(element("polyline", {points, fill: "none", stroke: colors[i % colors.length],
                                           "stroke-width": 1.6, "data-method": method}));
    });
    return svg;
  }
  function showCurves(row) {
    const image = images[row.dataset.index];
    original.forEach((other) => other.classList.toggle("selected", other === row));
    panel.replaceChildren();
    const close = document.createElement("button");
    close.textContent = "close";
    close.addEventListener("click", () => { panel.hidden = true; });
    const title = document.createElement("h3");
    title.textContent = `image ${image.index} (${image.class}): class score per step`;
    panel.append(title, close, document.createElement("br"));
    data.curve_metrics.forEach((key) => panel.appendChild(chart(image, key)));
    const legend = document.createElement("div");
    legend.className = "values";
    data.methods.forEach((method, i) => {
      const span = document.createElement("span");
      const areas = data.curve_metrics.map((key) => {
        const v = image.values[method][key];
        return `${metrics[key] ? metrics[key].label : key} ${v === null ? "-" : v.toFixed(1)}`;
      });
      span.style.color = colors[i % colors.length];
      span.textContent = `${method}: ${areas.join(", ")}`;
      legend.appendChild(span);
    });
    panel.appendChild(legend);
    panel.hidden = false;
  }
  original.forEach((row) => row.addEventListener("click", () => showCurves(row)));
})();
