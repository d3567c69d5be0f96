// biointerp variant browser: plain JavaScript, no libraries, no network beyond this server.
// Every value from the server or the URL is put in the page as text (textContent / attributes),
// never as HTML. State lives in the URL: /?q=GENE&sort=score&order=desc&page=2&size=50, /?variant=ID.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const MAX_QUERY = 200;
const POSITIVE = new Set(["pathogenic", "likely_pathogenic", "likely pathogenic", "pathogenic/likely_pathogenic", "pathogenic/likely pathogenic"]);
const NEGATIVE = new Set(["benign", "likely_benign", "likely benign", "benign/likely_benign", "benign/likely benign"]);
const LIST_PREF = ["variant_id", "gene", "rsid", "consequence", "clinvar_significance", "label", "status", "score"];
const TITLES = {
  variant_id: "Variant", variant_id0: "EVEE id (0-based)", chrom: "Chromosome", pos: "Position (1-based)",
  ref: "Ref", alt: "Alt", id: "ID (as in the input)", rsid: "rsID", gene: "Gene", consequence: "Consequence",
  clinvar_significance: "ClinVar significance", label: "Label", status: "Status", status_detail: "Status detail",
  split: "Split", score: "Score",
};
let info = null;           // /api/info
let current = null;        // last /api/search answer
let plotFor = null;        // the query whose plot is drawn
let infoReady = null;      // promise: info loaded

function el(tag, attrs, ...kids) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") n.className = v; else if (k === "text") n.textContent = v; else n.setAttribute(k, String(v));
  }
  for (const k of kids) n.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return n;
}
function svg(tag, attrs) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
  return n;
}
function labelClass(label) {
  const l = String(label || "").toLowerCase();
  return POSITIVE.has(l) ? "pathogenic" : NEGATIVE.has(l) ? "benign" : "other";
}
function fmtScore(x) {
  if (x === null || x === undefined) return "—";
  return Number(x).toPrecision(6);
}
function fmtCell(col, v) {
  if (v === null || v === undefined || v === "") return "—";
  if (col === "score") return fmtScore(v);
  if (col === "pos") return Number(v).toLocaleString("en-US");
  return String(v);
}
function pct(x) { return (100 * x).toFixed(1) + "%"; }
function params() { return new URLSearchParams(location.search); }
function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text || "";
  s.classList.toggle("error", !!isError);
}
function go(p, replace, state) {
  const url = "/?" + p.toString();
  if (replace) history.replaceState(state || null, "", url); else history.pushState(state || null, "", url);
  route();
}

async function api(path) {
  let r;
  try { r = await fetch(path, { headers: { Accept: "application/json" } }); }
  catch (e) { return { ok: false, status: 0, detail: "the server cannot be reached (" + e.message + ")" }; }
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    let d = body && body.detail;
    if (Array.isArray(d)) d = d.map((x) => (x.loc || []).slice(-1).join("") + ": " + x.msg).join("; ");
    return { ok: false, status: r.status, detail: d || ("HTTP " + r.status) };
  }
  return { ok: true, status: r.status, body };
}

// ---- views --------------------------------------------------------------------------------
function show(view) {
  $("list-view").hidden = view !== "list";
  $("variant-view").hidden = view !== "variant";
}

async function route() {
  const p = params();
  const v = p.get("variant"), q = p.get("q");
  if (v !== null) { $("q").value = v; return showVariant(v, p.get("zero_based") === "true"); }
  if (q !== null) { $("q").value = q; return showSearch(q, p); }
  show("none"); setStatus("");
  document.title = "biointerp variant browser";
}

async function showSearch(q, p) {
  const text = q.trim();
  if (!text) { show("none"); setStatus("Type a variant id, rsID, gene or region.", true); return; }
  if (text.length > MAX_QUERY) {
    show("none");
    setStatus(`Not searched: the text is ${text.length.toLocaleString("en-US")} characters long; the limit is ${MAX_QUERY}. It began: "${text.slice(0, 60)}…"`, true);
    return;
  }
  const size = Math.min(1000, Math.max(1, parseInt(p.get("size") || "50", 10) || 50));
  const page = Math.max(1, parseInt(p.get("page") || "1", 10) || 1);
  const sort = p.get("sort") || "pos", order = p.get("order") === "desc" ? "desc" : "asc";
  setStatus("Searching…");
  const qs = new URLSearchParams({ q: text, sort, order, offset: String((page - 1) * size), limit: String(size) });
  const r = await api("/api/search?" + qs.toString());
  if (!r.ok) { show("none"); setStatus(`No results for "${text}": ${r.detail}`, true); return; }
  const res = r.body;
  if ((res.kind === "variant" || res.kind === "rsid") && res.total === 1) {
    const np = new URLSearchParams({ variant: res.rows[0][0] });
    return go(np, true, history.state);
  }
  current = { ...res, page, size };
  renderList(res, page, size);
  if (res.kind === "gene" || res.kind === "region") {
    if (plotFor !== res.q) { plotFor = res.q; drawPlot(res.q); }
  } else { $("plot").replaceChildren(); $("plot-caption").textContent = ""; plotFor = null; }
}

function renderList(res, page, size) {
  show("list");
  const kindName = { gene: "Gene", region: "Region", rsid: "rsID", variant: "Variant" }[res.kind] || res.kind;
  $("list-title").textContent = `${kindName} ${res.target}`;
  document.title = `${res.target} – biointerp variant browser`;
  const first = res.total ? res.offset + 1 : 0, last = res.offset + res.rows.length;
  $("list-summary").textContent = res.total
    ? `${res.total.toLocaleString("en-US")} variants; sorted by ${res.sort === "pos" || res.sort === "variant_id" ? "position" : (TITLES[res.sort] || res.sort).toLowerCase()} (${res.order === "asc" ? "ascending" : "descending"}).`
    : "No variants found.";
  setStatus(res.total ? "" : `No variants found for "${res.q}".`, !res.total);
  const cols = LIST_PREF.filter((c) => res.columns.includes(c));
  const sortable = new Set((info && info.sorts) || ["pos", "score", "label", "consequence", "status"]);
  const head = $("list-head");
  head.replaceChildren();
  for (const c of cols) {
    const key = c === "variant_id" ? "pos" : c;
    const th = el("th", { scope: "col", class: c === "score" ? "num" : null });
    if (sortable.has(key) && res.kind !== "variant" && res.kind !== "rsid") {
      const active = res.sort === key;
      th.setAttribute("aria-sort", active ? (res.order === "asc" ? "ascending" : "descending") : "none");
      const b = el("button", { type: "button", class: "sort", "data-sort": key },
        c === "variant_id" ? "Variant (position)" : (TITLES[c] || c),
        el("span", { class: "arrow", "aria-hidden": "true", text: active ? (res.order === "asc" ? " ▲" : " ▼") : "" }));
      b.addEventListener("click", () => {
        const p = params();
        const order = active ? (res.order === "asc" ? "desc" : "asc") : (key === "score" ? "desc" : "asc");
        p.set("sort", key); p.set("order", order); p.delete("page");
        go(p);
      });
      th.append(b);
    } else th.textContent = TITLES[c] || c;
    head.append(th);
  }
  const body = $("list-body");
  body.replaceChildren();
  const idx = cols.map((c) => res.columns.indexOf(c));
  for (const row of res.rows) {
    const id = row[res.columns.indexOf("variant_id")];
    const tr = el("tr", { tabindex: "0", "data-id": id });
    cols.forEach((c, j) => {
      const v = row[idx[j]];
      const td = el("td", { class: c === "score" ? "num" : c === "label" ? "label-" + labelClass(v) : null, "data-col": c });
      if (c === "variant_id") td.append(el("a", { href: "/?" + new URLSearchParams({ variant: id }).toString(), tabindex: "-1", text: id }));
      else td.textContent = fmtCell(c, v);
      if (c === "score" && v !== null) td.setAttribute("data-value", String(v));
      tr.append(td);
    });
    tr.addEventListener("click", (e) => { if (e.target.tagName !== "A") openVariant(id); else { e.preventDefault(); openVariant(id); } });
    tr.addEventListener("keydown", rowKeys);
    body.append(tr);
  }
  const pages = Math.max(1, Math.ceil(res.total / size));
  $("page-info").textContent = res.total ? `Rows ${first.toLocaleString("en-US")}–${last.toLocaleString("en-US")} of ${res.total.toLocaleString("en-US")} (page ${page} of ${pages})` : "";
  $("prev").disabled = page <= 1;
  $("next").disabled = last >= res.total;
  $("page-size").value = String(size);
  $("list-table").setAttribute("data-ready", "1");
}

function rowKeys(e) {
  const tr = e.currentTarget;
  if (e.key === "ArrowDown" && tr.nextElementSibling) { tr.nextElementSibling.focus(); e.preventDefault(); }
  else if (e.key === "ArrowUp" && tr.previousElementSibling) { tr.previousElementSibling.focus(); e.preventDefault(); }
  else if (e.key === "Enter") { openVariant(tr.getAttribute("data-id")); e.preventDefault(); }
}

function openVariant(id) {
  go(new URLSearchParams({ variant: id }), false, { from: location.search });
}

function pageStep(delta) {
  if (!current || $("list-view").hidden) return;
  const p = params();
  const page = current.page + delta;
  if (page < 1 || (delta > 0 && current.offset + current.rows.length >= current.total)) return;
  p.set("page", String(page));
  go(p);
}

// ---- plot: scores along the genome, coloured by label ---------------------------------------
async function drawPlot(q) {
  const box = $("plot"), cap = $("plot-caption");
  box.replaceChildren(); cap.textContent = "Loading the plot…";
  const r = await api("/api/points?" + new URLSearchParams({ q }).toString());
  if (plotFor !== q) return;
  if (!r.ok) { cap.textContent = "No plot: " + r.detail; return; }
  const d = r.body;
  const pts = d.pos.map((p, i) => ({ p, s: d.score[i], l: d.label[i], id: d.id[i] })).filter((x) => x.s !== null);
  if (!pts.length) { cap.textContent = "No scored variants to plot."; return; }
  const W = 900, H = 230, L = 52, R = 12, T = 26, B = 34;
  let x0 = Math.min(...pts.map((x) => x.p)), x1 = Math.max(...pts.map((x) => x.p));
  let y0 = Math.min(...pts.map((x) => x.s)), y1 = Math.max(...pts.map((x) => x.s));
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const X = (p) => L + (p - x0) / (x1 - x0) * (W - L - R), Y = (s) => H - B - (s - y0) / (y1 - y0) * (H - T - B);
  const chrom = d.chrom || String(d.target).split(":")[0];
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `Scores of ${pts.length} variants along ${chrom}, coloured by label` });
  s.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }), svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  for (const [v, anchor, x] of [[x0, "start", L], [x1, "end", W - R]]) {
    const t = svg("text", { x, y: H - B + 14, "text-anchor": anchor }); t.textContent = Math.round(v).toLocaleString("en-US"); s.append(t);
  }
  const xl = svg("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }); xl.textContent = `position on ${chrom} (bp)`; s.append(xl);
  for (const v of [y0, y1]) { const t = svg("text", { x: L - 6, y: Y(v) + 4, "text-anchor": "end" }); t.textContent = Number(v.toPrecision(3)).toString(); s.append(t); }
  const yl = svg("text", { x: 12, y: (T + H - B) / 2, transform: `rotate(-90 12 ${(T + H - B) / 2})`, "text-anchor": "middle" }); yl.textContent = "score"; s.append(yl);
  const counts = { pathogenic: 0, benign: 0, other: 0 };
  for (const x of pts) {
    const k = labelClass(x.l); counts[k]++;
    const c = svg("circle", { cx: X(x.p).toFixed(1), cy: Y(x.s).toFixed(1), r: 3, class: "pt-" + k, "data-id": x.id });
    const t = svg("title", {}); t.textContent = `${x.id}: score ${fmtScore(x.s)}, ${x.l || "no label"}`; c.append(t);
    c.addEventListener("click", () => openVariant(x.id));
    s.append(c);
  }
  let lx = W - R - 400;
  for (const [k, name] of [["pathogenic", "pathogenic"], ["benign", "benign"], ["other", "other / no label"]]) {
    s.append(svg("circle", { cx: lx, cy: 9, r: 4, class: "pt-" + k }));
    const t = svg("text", { x: lx + 8, y: 13 }); t.textContent = `${name} (${counts[k]})`; s.append(t);
    lx += 135;
  }
  box.replaceChildren(s);
  cap.textContent = `Score along the genome for ${pts.length.toLocaleString("en-US")} variants` +
    (d.every > 1 ? ` (every ${d.every}th of ${d.total.toLocaleString("en-US")}, thinned evenly)` : "") +
    `: ${counts.pathogenic} pathogenic, ${counts.benign} benign, ${counts.other} other or unlabelled. Click a point to open it.`;
}

// ---- one variant ------------------------------------------------------------------------------
async function showVariant(id, zeroBased) {
  setStatus("Loading…");
  const qs = zeroBased ? "?zero_based=true" : "";
  const [r] = await Promise.all([api("/api/variant/" + encodeURIComponent(id) + qs), infoReady]);
  if (!r.ok) { show("none"); setStatus(`Variant "${id}": ${r.detail}`, true); return; }
  setStatus("");
  show("variant");
  const d = r.body;
  const first = d.results[0].fields;
  $("variant-title").textContent = `Variant ${first.variant_id}`;
  document.title = `${first.variant_id} – biointerp variant browser`;
  const back = $("back");
  const from = history.state && history.state.from;
  back.setAttribute("href", from ? "/" + from : (first.gene ? "/?" + new URLSearchParams({ q: first.gene }).toString() : "/"));
  back.textContent = from ? "← Back to the list" : (first.gene ? `← All variants of ${first.gene}` : "← Home");
  const body = $("variant-body");
  body.replaceChildren();
  if (d.count > 1) body.append(el("p", { text: `This id occurs ${d.count} times in the database; every row is shown.` }));
  d.results.forEach((res, i) => body.append(variantBlock(res, i)));
  $("variant-title").focus({ preventScroll: true });
}

function variantBlock(res, i) {
  const wrap = el("article", { "aria-label": `row ${i + 1}` });
  const dl = el("dl", { id: i ? null : "variant-fields" });
  for (const [k, v] of Object.entries(res.fields)) {
    const dd = el("dd", { "data-field": k });
    if (k === "gene" && v) dd.append(el("a", { href: "/?" + new URLSearchParams({ q: v }).toString(), text: v }));
    else dd.textContent = fmtCell(k === "pos" ? "pos" : k, v);
    if (k === "score" && v !== null) dd.setAttribute("data-value", String(v));
    if (k === "label" && v) dd.className = "label-" + labelClass(v);
    dl.append(el("dt", { text: TITLES[k] || k }), dd);
  }
  wrap.append(dl);
  wrap.append(readingBlock(res.reading, res.fields.score));
  if (res.explanations) wrap.append(explanationsBlock(res.explanations, i));
  wrap.append(headsBlock(res.heads, i));
  return wrap;
}

function readingBlock(rd, score) {
  const box = el("section", { class: "reading", "aria-label": "Calibration reading", id: "reading" });
  if (!rd) {
    box.append(el("p", { text: score === null || score === undefined
      ? "No calibration reading: this variant has no score (see its status)."
      : "No calibration reading: the database holds no variants labelled pathogenic or benign with a score." }));
    return box;
  }
  box.append(el("p", {},
    "Calibration reading: among ", el("strong", { "data-n": rd.n, text: rd.n.toLocaleString("en-US") }),
    ` labelled variants with a score between ${fmtScore(rd.lo)} and ${fmtScore(rd.hi)}, `,
    el("strong", { id: "reading-share", "data-share": rd.share, text: pct(rd.share) }),
    ` are pathogenic (95% interval ${pct(rd.ci[0])}–${pct(rd.ci[1])}; ${rd.pathogenic.toLocaleString("en-US")} pathogenic, ` +
    `${(rd.n - rd.pathogenic).toLocaleString("en-US")} benign).`));
  box.append(el("p", { class: "desc", text: `Bins hold equal numbers of the database's ${rd.labelled.toLocaleString("en-US")} labelled, scored variants; the share is observed, not a model output.` }));
  if (info && info.calibration && info.calibration.bins.length > 1) box.append(calPlot(info.calibration.bins, rd.bin));
  return box;
}

function calPlot(bins, hit) {
  const W = 440, H = 124, L = 48, B = 22, T = 10, bw = (W - L - 6) / bins.length;
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "Share pathogenic per score bin; this variant's bin highlighted" });
  s.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - 6, y2: H - B }));
  for (const v of [0, 1]) { const t = svg("text", { x: L - 4, y: H - B - v * (H - B - T) + 4, "text-anchor": "end" }); t.textContent = pct(v); s.append(t); }
  bins.forEach((b, i) => {
    const h = b.share * (H - B - T);
    const r = svg("rect", { x: L + i * bw + 1, y: H - B - h, width: Math.max(1, bw - 2), height: h, class: b.bin === hit ? "cal-hit" : "cal-bar" });
    const t = svg("title", {}); t.textContent = `${fmtScore(b.lo)}–${fmtScore(b.hi)}: ${pct(b.share)} of ${b.n}`; r.append(t);
    s.append(r);
  });
  const xl = svg("text", { x: (L + W) / 2, y: H - 6, "text-anchor": "middle" }); xl.textContent = "score bins (low → high)"; s.append(xl);
  return s;
}

function explanationsBlock(rows, i) {
  const box = el("section", { "aria-label": "Top explanation features" });
  box.append(el("h3", { text: "Top explanation features (sparse autoencoder latents)" }));
  if (!rows.length) { box.append(el("p", { text: "This variant is not in the explanations table." })); return box; }
  const cols = [["rank", "Rank"], ["latent", "Latent"], ["label", "Feature label"], ["delta", "Δ (alt − ref)"], ["z", "z"], ["position", "Position"]];
  const table = el("table", { id: i ? null : "explanations-table" });
  table.append(el("thead", {}, el("tr", {}, ...cols.map(([, t]) => el("th", { scope: "col", text: t })))));
  const tb = el("tbody");
  for (const r of rows) {
    tb.append(el("tr", { "data-latent": r.latent }, ...cols.map(([k]) => {
      const v = r[k];
      const num = k === "delta" || k === "z";
      return el("td", { class: num ? "num" : null, "data-value": num && v !== null ? String(v) : null,
        text: num ? fmtScore(v) : (k === "position" && v !== null && v !== undefined ? Number(v).toLocaleString("en-US") : (v ?? "—")) });
    })));
  }
  table.append(tb);
  box.append(el("div", { class: "table-wrap" }, table));
  return box;
}

function headsBlock(values, i) {
  const heads = (info && info.heads) || [];
  const box = el("section", { "aria-label": "Scores of every head" });
  if (!heads.length) return box;
  const fid = "head-filter-" + i;
  const filter = el("input", { id: fid, type: "search", placeholder: "name, group or description" });
  const count = el("span", { class: "desc" });
  box.append(el("h3", { text: `Every head (${heads.length.toLocaleString("en-US")})` }),
    el("div", { class: "heads-tools" }, el("label", { for: fid, text: "Filter heads" }), filter, count));
  const table = el("table", { class: "heads", id: i ? null : "heads-table" });
  table.append(el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Head" }), el("th", { scope: "col", class: "num", text: "Value" }), el("th", { scope: "col", text: "Description" }))));
  const tb = el("tbody");
  const groups = new Map();
  heads.forEach((h, j) => { const g = h.group || "heads"; if (!groups.has(g)) groups.set(g, []); groups.get(g).push(j); });
  const rows = [];
  for (const [g, idxs] of groups) {
    const gr = el("tr", { class: "group-row" }, el("th", { colspan: "3", scope: "rowgroup", text: `${g} (${idxs.length})` }));
    tb.append(gr);
    for (const j of idxs) {
      const h = heads[j], v = values[j];
      const tr = el("tr", { "data-head": h.name },
        el("th", { scope: "row", title: h.name, text: h.display || h.name }),
        el("td", { class: "num", "data-value": v === null ? "" : String(v), text: fmtScore(v) }),
        el("td", { class: "desc", text: h.description || "" }));
      tr._text = `${h.name} ${h.display} ${g} ${h.description}`.toLowerCase();
      tr._group = gr;
      rows.push(tr); tb.append(tr);
    }
  }
  table.append(tb);
  box.append(el("div", { class: "table-wrap" }, table));
  const apply = () => {
    const f = filter.value.trim().toLowerCase();
    let n = 0;
    const seen = new Set();
    for (const tr of rows) { const ok = !f || tr._text.includes(f); tr.hidden = !ok; if (ok) { n++; seen.add(tr._group); } }
    for (const gr of groups.keys()) { /* group rows follow their members */ }
    tb.querySelectorAll("tr.group-row").forEach((gr) => { gr.hidden = !seen.has(gr); });
    count.textContent = `${n.toLocaleString("en-US")} shown`;
  };
  filter.addEventListener("input", apply);
  apply();
  return box;
}

// ---- wiring -----------------------------------------------------------------------------------
function about() {
  const dl = $("about-list");
  dl.replaceChildren();
  const add = (k, v) => { if (v !== null && v !== undefined && v !== "") dl.append(el("dt", { text: k }), el("dd", { text: typeof v === "object" ? JSON.stringify(v) : String(v) })); };
  add("Variants", info.rows !== undefined && info.rows !== null ? Number(info.rows).toLocaleString("en-US") : null);
  add("Heads", info.heads.length.toLocaleString("en-US"));
  add("Model", info.model); add("Probe", info.probe); add("Built", info.build_date); add("Description", info.description);
  if (info.calibration) add("Labelled rows (calibration)", info.calibration.labelled.toLocaleString("en-US"));
}

async function init() {
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("q").value.trim();
    const p = new URLSearchParams();
    if (text.length > MAX_QUERY) { show("none"); setStatus(`Not searched: the text is ${text.length.toLocaleString("en-US")} characters long; the limit is ${MAX_QUERY}. It began: "${text.slice(0, 60)}…"`, true); return; }
    p.set("q", text);
    const size = params().get("size"); if (size) p.set("size", size);
    go(p);
  });
  $("prev").addEventListener("click", () => pageStep(-1));
  $("next").addEventListener("click", () => pageStep(1));
  $("page-size").addEventListener("change", () => { const p = params(); p.set("size", $("page-size").value); p.delete("page"); go(p); });
  $("back").addEventListener("click", (e) => { if (history.state && history.state.from) { e.preventDefault(); history.back(); } });
  window.addEventListener("popstate", route);
  document.addEventListener("keydown", (e) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName);
    if (e.key === "/" && !typing) { e.preventDefault(); $("q").focus(); $("q").select(); }
    else if (e.key === "Escape" && !$("variant-view").hidden) { e.preventDefault(); $("back").click(); }
    else if (!typing && !e.ctrlKey && !e.metaKey && !e.altKey && (e.key === "n" || e.key === "p")) pageStep(e.key === "n" ? 1 : -1);
    else if (!typing && e.key === "ArrowDown" && !$("list-view").hidden && e.target === document.body) { const r = $("list-body").firstElementChild; if (r) { r.focus(); e.preventDefault(); } }
  });
  infoReady = Promise.all([api("/api/info"), api("/api/calibration")]).then(([ri, rc]) => {
    info = ri.ok ? ri.body : { heads: [], sorts: [] };
    if (rc.ok) info.calibration = rc.body;
    about();
  });
  await route();  // a search does not wait for the database summary
}

document.addEventListener("DOMContentLoaded", init);
