// Live threshold tuning in the browser: every number follows the slider with no server round trip.
//
// The server sends the scores once per score column, sorted, as float64 arrays (good ones, defect ones
// with a defect-type code each). Each count "how many scores are >= t" is a binary search, so a move
// costs O(log n) per class and per defect type whatever the number of images. The curves and the
// histogram's bars arrive drawn-ready (downsampled by the server for drawing only); a move restyles
// the operating points and moves the histogram's lines. The server hears of the threshold on release
// (after a short pause for keyboard moves), to refresh the misclassified thumbnails and to save.
//
// The Streamlit component protocol is spoken directly (no npm package): "componentReady" once,
// "render" events in, "setComponentValue" and "setFrameHeight" out.
"use strict";

const state = {
  dataKey: null, revision: null, good: null, defect: null, types: [], typeNames: [],
  threshold: 0, reviewFrom: 0, band: false, low: 0, high: 1, dataLow: 0, dataHigh: 1, step: 1e-3, dragging: null,
  releasePause: 400,   // ms of keyboard quiet before the server is told (a test on a busy machine lengthens it)
  plotsReady: false, framePending: false, sendTimer: null, lastArgs: null, height: 0,
};
window.liveLatencies = [];   // ms from an input event to its numbers on the page (read by the e2e test)
window.liveFrameLatencies = [];   // ms from an input event to the next painted frame
window.liveSent = 0;   // how many times the server was told of a threshold (on release only)

const $ = (id) => document.getElementById(id);

function post(type, extra) {
  window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, extra), "*");
}

function decodeFloat64(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new Float64Array(bytes.buffer);
}

function decodeUint16(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new Uint16Array(bytes.buffer);
}

// how many values of an ascending array are >= t
function countAtLeast(sorted, t) {
  let low = 0, high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (sorted[middle] < t) low = middle + 1; else high = middle;
  }
  return sorted.length - low;
}

// [OK, REVIEW, NG] counts of one ascending array
function split(sorted, threshold, reviewFrom) {
  const ng = countAtLeast(sorted, threshold);
  const atReview = reviewFrom === null ? ng : countAtLeast(sorted, Math.min(reviewFrom, threshold));
  return [sorted.length - atReview, atReview - ng, ng];
}

function share(part, whole) { return whole ? part / whole : NaN; }
// one decimal, halves rounded up on the exact value of 100 × value: the server's words.percent is the same rule
function percent(value) { return Number.isFinite(value) ? (100 * value).toFixed(1) + " %" : "—"; }
function number(value) { return Number.isFinite(value) ? Number(value.toPrecision(6)).toString() : "—"; }

function measure(threshold, reviewFrom) {
  const good = split(state.good, threshold, reviewFrom);
  const defect = split(state.defect, threshold, reviewFrom);
  const nGood = state.good.length, nDefect = state.defect.length;
  const precision = share(defect[2], defect[2] + good[2]);
  const recall = share(defect[2], nDefect);
  const f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : NaN;
  return {
    good: good, defect: defect, precision: precision, recall: recall, f1: f1,
    accuracy: share(good[0] + defect[2], good[0] + good[2] + defect[0] + defect[2]),
    falseRejectRate: share(good[2], nGood), escapeRate: share(defect[0], nDefect),
    reviewRate: share(good[1] + defect[1], nGood + nDefect),
    perType: state.types.map((sorted, index) => {
      const counts = split(sorted, threshold, reviewFrom);
      return { name: state.typeNames[index], images: sorted.length, caught: counts[2], review: counts[1],
               escaped: counts[0], recall: share(counts[2], sorted.length) };
    }).sort((a, b) => (a.recall - b.recall) || a.name.localeCompare(b.name)),
  };
}

const CARDS = [
  ["precision", "Precision", "Of the parts rejected (NG), the share that are defects."],
  ["recall", "Recall", "Of the defects, the share rejected (NG)."],
  ["f1", "F1", "Harmonic mean of precision and recall."],
  ["accuracy", "Accuracy", "Of the parts decided automatically (OK or NG; parts sent to review left out), the share " +
   "judged correctly.", "of OK and NG decisions; review left out"],
  ["false_reject_rate", "False-reject rate", "Good parts rejected (NG), of all good parts."],
  ["escape_rate", "Escape rate", "Defects accepted (OK), of all defects."],
  ["review_rate", "Review rate", "Parts sent to review, of all parts."],
];

// every piece of the page that carries data is built as nodes with text: a defect type named like markup
// stays text (the frame shares the app's origin, so markup from a data set would run as the app)
function element(tag, text, attributes) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.appendChild(cell);
  return tr;
}

function buildCards() {
  const cards = $("cards");
  for (const [key, label, help, note] of CARDS) {
    const card = element("div", null, { class: "card", title: help, "data-card": key });
    card.appendChild(element("div", label, { class: "label" }));
    card.appendChild(element("div", "—", { class: "value", "data-metric": key }));
    if (note) card.appendChild(element("div", note, { class: "note" }));
    cards.appendChild(card);
  }
}

function showNumbers(numbers) {
  const values = {
    precision: percent(numbers.precision), recall: percent(numbers.recall),
    f1: Number.isNaN(numbers.f1) ? "—" : numbers.f1.toFixed(3), accuracy: percent(numbers.accuracy),
    false_reject_rate: percent(numbers.falseRejectRate), escape_rate: percent(numbers.escapeRate),
    review_rate: state.band ? percent(numbers.reviewRate) : "off",
  };
  for (const [key, text] of Object.entries(values)) {
    document.querySelector(`[data-metric="${key}"]`).textContent = text;
  }
  $("threshold-value").textContent = number(state.threshold);
  $("threshold-value").dataset.value = String(state.threshold);   // full precision, for tests and tools
  const reviewFrom = Math.min(state.reviewFrom, state.threshold);
  $("review-value").textContent = number(reviewFrom);
  $("review-value").dataset.value = state.band ? String(reviewFrom) : "";
  const g = numbers.good, d = numbers.defect;
  const header = (names) => row(names.map((name) => element("th", name)));
  const cell = (value, name, css) => element("td", value, { class: css, "data-metric": name });
  $("confusion").replaceChildren(
    header(["", "accepted (OK)", "review", "rejected (NG)"]),
    row([element("th", "actual good"), cell(g[0], "good_ok", "ok-good"), cell(g[1], "good_review", "review"),
         cell(g[2], "good_ng", "ng-good")]),
    row([element("th", "actual defect"), cell(d[0], "defect_ok", "ok-defect"),
         cell(d[1], "defect_review", "review"), cell(d[2], "defect_ng", "ng-defect")]));
  $("band-counts").textContent = `${g[0] + d[0]} OK, ${g[1] + d[1]} to review, ${g[2] + d[2]} NG` +
    (state.band ? "" : " (review band off)");
  if (!numbers.perType.length) {
    $("per-type").replaceChildren(row([element("td", "No labelled defects in this data set.")]));
    return;
  }
  $("per-type").replaceChildren(
    header(["defect type", "images", "caught (NG)", "to review", "escaped (OK)", "recall"]),
    ...numbers.perType.map((type) => {
      const tr = row([element("td", type.name), element("td", type.images), element("td", type.caught),
                      element("td", type.review), element("td", type.escaped, { class: type.escaped ? "escapes" : "" }),
                      element("td", percent(type.recall), { "data-metric": "recall_" + type.name })]);
      tr.setAttribute("data-type", type.name);
      return tr;
    }));
}

// the title sits at the top left, the legend just above the plot area: they never overlap
const DARK = { paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#0e1117", font: { color: "#e6edf3" },
               margin: { l: 55, r: 15, t: 70, b: 45 }, height: 360, showlegend: true,
               legend: { orientation: "h", y: 1.02, yanchor: "bottom", x: 1, xanchor: "right" } };
const title = (text) => ({ text: text, x: 0.01, xanchor: "left", y: 0.97, yanchor: "top" });
const AXIS = { gridcolor: "#30363d", zerolinecolor: "#30363d" };
const POINT = { size: 13, color: "#f5a623", line: { width: 2, color: "white" } };

function drawPlots(args, numbers) {
  const config = { displayModeBar: false, responsive: true };
  const haveCurves = args.roc !== null;
  $("roc").hidden = $("pr").hidden = !haveCurves;
  if (haveCurves) {
    Plotly.newPlot("roc", [
      { x: [0, 1], y: [0, 1], mode: "lines", name: "chance", line: { dash: "dot", color: "#8b949e" }, hoverinfo: "skip" },
      { x: args.roc.x, y: args.roc.y, mode: "lines", name: "ROC", line: { color: "#58a6ff", shape: "hv" } },
      { x: [numbers.falseRejectRate], y: [numbers.recall], mode: "markers", name: "current threshold", marker: POINT },
    ], Object.assign({}, DARK, { title: title(`ROC curve — AUROC ${args.roc.area.toFixed(3)}`),
      xaxis: Object.assign({ title: { text: "false-reject rate (good parts rejected)" }, range: [-0.02, 1.02] }, AXIS),
      yaxis: Object.assign({ title: { text: "recall (defects caught)" }, range: [-0.02, 1.02] }, AXIS) }), config);
    Plotly.newPlot("pr", [
      { x: args.pr.x, y: args.pr.y, mode: "lines", name: "PR", line: { color: "#58a6ff", shape: "hv" } },
      { x: [numbers.recall], y: [numbers.precision], mode: "markers", name: "current threshold", marker: POINT },
    ], Object.assign({}, DARK, { title: title(`Precision–recall — AUPRC ${args.pr.area.toFixed(3)}`),
      xaxis: Object.assign({ title: { text: "recall (defects caught)" }, range: [-0.02, 1.02] }, AXIS),
      yaxis: Object.assign({ title: { text: "precision (rejects that are defects)" }, range: [-0.02, 1.02] }, AXIS) }), config);
  }
  const bars = [];
  for (const [name, counts, colour] of [["good", args.histogram.good, "#3fb68b"],
                                          ["defect", args.histogram.defect, "#e5534b"]]) {
    if (counts.some((count) => count > 0)) {
      bars.push({ type: "bar", x: args.histogram.centres, y: counts, width: args.histogram.width, name: name,
                  marker: { color: colour }, opacity: 0.7 });
    }
  }
  Plotly.newPlot("histogram", bars, Object.assign({}, DARK, {
    title: title("Score distribution — drag the orange line"), barmode: "overlay",
    xaxis: Object.assign({ title: { text: `${args.column} (higher = more anomalous)` } }, AXIS),
    yaxis: Object.assign({ title: { text: "images" } }, AXIS), shapes: histogramShapes(), dragmode: false }),
    config);
  state.plotsReady = true;
}

// Dragging the threshold line (or the band's edge) on the histogram: every pointer move sets the threshold and
// every number follows, as with the keyboard; the server hears of it on release. Plotly's own shape editing
// reports a shape only when it is dropped, so the drag is ours.
const GRAB_PIXELS = 10;

function histogramAxis() {
  const plot = $("histogram"), layout = plot._fullLayout;
  if (!layout || !layout.xaxis) return null;
  const left = plot.getBoundingClientRect().left + layout._size.l;
  return { toValue: (clientX) => layout.xaxis.p2l(clientX - left), toX: (value) => left + layout.xaxis.l2p(value) };
}

function grabbedLine(clientX) {
  const axis = histogramAxis();
  if (!axis) return null;
  const lines = [["threshold", state.threshold]].concat(state.band ? [["review", Math.min(state.reviewFrom, state.threshold)]] : []);
  let best = null;
  for (const [name, value] of lines) {
    const distance = Math.abs(axis.toX(value) - clientX);
    if (distance <= GRAB_PIXELS && (!best || distance < best[1])) best = [name, distance];
  }
  return best && best[0];
}

function listenForDrags() {
  const plot = $("histogram");
  plot.addEventListener("pointerdown", (event) => {
    const line = grabbedLine(event.clientX);
    if (!line) return;
    state.dragging = line;
    event.preventDefault();
    event.stopPropagation();
    plot.setPointerCapture(event.pointerId);
  }, true);
  plot.addEventListener("pointermove", (event) => {
    if (!state.dragging) {
      plot.style.cursor = grabbedLine(event.clientX) ? "ew-resize" : "";
      return;
    }
    const value = clamp(histogramAxis().toValue(event.clientX));
    if (state.dragging === "threshold") {
      state.threshold = value;
      if (state.reviewFrom > value) state.reviewFrom = value;
    } else {
      state.reviewFrom = Math.min(value, state.threshold);
    }
    syncInputs();
    refresh(event);
  }, true);
  const release = () => {
    if (!state.dragging) return;
    state.dragging = null;
    scheduleSend(0);
  };
  plot.addEventListener("pointerup", release, true);
  plot.addEventListener("pointercancel", release, true);
}

function histogramShapes() {
  const line = { type: "line", yref: "paper", y0: 0, y1: 1, x0: state.threshold, x1: state.threshold,
                 line: { color: "#f5a623", width: 3 } };
  if (!state.band) return [line];
  return [line, { type: "line", yref: "paper", y0: 0, y1: 1, x0: state.reviewFrom, x1: state.reviewFrom,
                  line: { color: "#c9d1d9", width: 2, dash: "dash" } },
          { type: "rect", yref: "paper", y0: 0, y1: 1, x0: state.reviewFrom, x1: state.threshold,
            fillcolor: "#8b949e", opacity: 0.2, line: { width: 0 }, editable: false }];
}

function redrawPlots(numbers) {
  if (!state.plotsReady) {
    // plotly.js (4.8 MB) loads after the numbers are on the page; the plots are drawn once it has
    if (window.Plotly && state.lastArgs) drawPlots(state.lastArgs, numbers);
    return;
  }
  if (!$("roc").hidden) {
    Plotly.restyle("roc", { x: [[numbers.falseRejectRate]], y: [[numbers.recall]] }, [2]);
    Plotly.restyle("pr", { x: [[numbers.recall]], y: [[numbers.precision]] }, [1]);
  }
  Plotly.relayout("histogram", { shapes: histogramShapes() });
}

function clamp(value) { return Math.min(Math.max(value, state.low), state.high); }

// Both sliders share one axis (the same range), so the band's handle is always left of the threshold's.
function setRange(threshold) {
  // a threshold typed outside the scores' range widens the range: the slider shows the threshold the page uses
  state.low = Math.min(state.dataLow, threshold);
  state.high = Math.max(state.dataHigh, threshold);
  for (const id of ["threshold", "review-from"]) {
    $(id).min = state.low; $(id).max = state.high; $(id).step = state.step;
  }
}

function syncInputs() {
  $("threshold").value = state.threshold;
  $("review-from").value = Math.min(state.reviewFrom, state.threshold);
  $("band-toggle").checked = state.band;
  $("band-row").hidden = !state.band;
}

let latest = null;

function refresh(event) {
  const numbers = measure(state.threshold, state.band ? Math.min(state.reviewFrom, state.threshold) : null);
  showNumbers(numbers);
  if (event) {
    const started = event.timeStamp;
    window.liveLatencies.push(performance.now() - started);
    requestAnimationFrame(() => window.liveFrameLatencies.push(performance.now() - started));
  }
  latest = numbers;
  // the plots follow on the next frame; several moves within one frame are drawn once
  if (!state.framePending) {
    state.framePending = true;
    requestAnimationFrame(() => { state.framePending = false; redrawPlots(latest); });
  }
}

function scheduleSend(delay) {
  clearTimeout(state.sendTimer);
  state.sendTimer = setTimeout(() => {
    window.liveSent += 1;
    post("streamlit:setComponentValue", { dataType: "json", value: {
      threshold: state.threshold, review_from: state.band ? Math.min(state.reviewFrom, state.threshold) : null,
      band: state.band, revision: state.revision } });
  }, delay);
}

function setHeight() {
  // only a real change is sent: Streamlit re-renders the component on every height it is told
  // the content's own height: the document's scrollHeight is never less than the frame, so it could only grow
  const height = Math.ceil($("live").getBoundingClientRect().height) + 12;
  if (Math.abs(height - state.height) > 2) {
    state.height = height;
    post("streamlit:setFrameHeight", { height: height });
  }
}

function loadPlotly() {
  const script = document.createElement("script");
  script.src = "plotly.min.js";
  script.onload = () => {
    if (state.lastArgs) {
      drawPlots(state.lastArgs, latest || measure(state.threshold, state.band ? state.reviewFrom : null));
      setHeight();
    }
  };
  document.head.appendChild(script);
}

function onRender(args) {
  const dataChanged = args.data_key !== state.dataKey;
  if (dataChanged) {
    state.dataKey = args.data_key;
    state.good = decodeFloat64(args.good);
    state.defect = decodeFloat64(args.defect);
    const defectTypes = decodeUint16(args.defect_types);
    state.typeNames = args.type_names;
    state.types = args.type_names.map((_, code) => state.defect.filter((_, index) => defectTypes[index] === code));
    state.dataLow = args.low; state.dataHigh = args.high; state.step = args.step;
  }
  if (dataChanged || args.revision !== state.revision) {   // the server set the threshold (preset, exact value)
    state.revision = args.revision;
    setRange(args.threshold);
    state.threshold = args.threshold;
    state.band = args.review_from !== null;
    state.reviewFrom = args.review_from !== null ? args.review_from : clamp(args.default_review_from);
    syncInputs();
  }
  const numbers = measure(state.threshold, state.band ? Math.min(state.reviewFrom, state.threshold) : null);
  latest = numbers;
  state.lastArgs = args;
  if (dataChanged) state.plotsReady = false;
  showNumbers(numbers);
  if (window.Plotly) {
    if (dataChanged) drawPlots(args, numbers); else redrawPlots(numbers);
  }
  setHeight();
}

function main() {
  buildCards();
  listenForDrags();
  $("threshold").addEventListener("input", (event) => {
    state.threshold = Number(event.target.value);
    if (state.reviewFrom > state.threshold) state.reviewFrom = state.threshold;
    $("review-from").value = Math.min(state.reviewFrom, state.threshold);
    refresh(event);
  });
  $("review-from").addEventListener("input", (event) => {
    state.reviewFrom = Math.min(Number(event.target.value), state.threshold);
    event.target.value = state.reviewFrom;   // the band ends at the threshold: its handle stops there
    refresh(event);
  });
  $("band-toggle").addEventListener("change", (event) => {
    state.band = event.target.checked;
    syncInputs();
    refresh(event);
    setHeight();
    scheduleSend(0);
  });
  // told on release: a pointer drag ends with "change"; keyboard steps fire "change" each, so wait for a pause
  for (const id of ["threshold", "review-from"]) {
    $(id).addEventListener("change", () => scheduleSend(state.releasePause));
  }
  window.addEventListener("message", (event) => {
    if (event.data && event.data.type === "streamlit:render") onRender(event.data.args);
  });
  post("streamlit:componentReady", { apiVersion: 1 });
  loadPlotly();
}

main();
