// xmodal report: lists the files of a labelling run, page by page, sorted and filtered.
// All data comes from data.js (window.XMODAL_REPORT); text is set with textContent only,
// so file and class names can never be read as HTML. The view's state lives in the URL's
// hash, so a link (e.g. from a confusion-matrix cell) opens the same list.
"use strict";
(function () {
  const D = window.XMODAL_REPORT;
  const $ = (id) => document.getElementById(id);
  const DEFAULTS = { sort: "score", cls: "", kind: "", correct: "", max: "", q: "", truth: "", pred: "", page: "1" };
  const FIELDS = ["sort", "cls", "kind", "correct", "max", "q"];
  const classIndex = new Map(D.classes.map((name, i) => [name, i]));

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "style") node.style.cssText = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }
  function colour(name) {
    const i = classIndex.has(name) ? classIndex.get(name) : 0;
    return `hsl(${(i * 137.508) % 360}, 55%, 42%)`;
  }
  const fmt = (x, digits = 3) => (x === null || x === undefined ? "" : Number(x).toFixed(digits));
  const seconds = (x) => `${Number(x).toFixed(x < 10 ? 2 : 1)} s`;

  function readState() {
    const params = new URLSearchParams(location.hash.slice(1));
    const state = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS)) if (params.has(key)) state[key] = params.get(key);
    return state;
  }
  function writeState(state) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(state)) if (value !== DEFAULTS[key]) params.set(key, value);
    const hash = params.toString();
    if (hash !== location.hash.slice(1)) location.hash = hash;
    else render();
  }

  function matches(f, s) {
    if (s.kind && (s.kind === "error" ? !f.e : f.e || f.k !== s.kind)) return false;
    if (s.cls && f.l !== s.cls) return false;
    if (s.truth && f.g !== s.truth) return false;
    if (s.pred && (f.e || f.l !== s.pred)) return false;
    if (s.correct && (f.g === undefined || f.e || (f.g === f.l) !== (s.correct === "yes"))) return false;
    if (s.max !== "" && !(f.e || f.s <= Number(s.max))) return false;
    if (s.q && !f.p.toLowerCase().includes(s.q.toLowerCase())) return false;
    return true;
  }
  const byScore = (f) => (f.e ? -1 : f.s);
  const SORTS = {
    score: (a, b) => byScore(a) - byScore(b),
    "-score": (a, b) => byScore(b) - byScore(a),
    label: (a, b) => (a.l || "").localeCompare(b.l || "") || byScore(a) - byScore(b),
    path: (a, b) => (a.p < b.p ? -1 : a.p > b.p ? 1 : 0),
  };

  function fileView(f) {
    const header = el("header", {},
      el("a", { class: "path", href: f.u, target: "_blank", rel: "noopener", text: f.p }),
      el("span", { class: "kind", text: f.e ? "error" : f.k }));
    if (!f.e) {
      header.append(el("span", { class: "label", style: `background:${colour(f.l)}`, text: f.l }),
        el("span", { class: "score", text: fmt(f.s) }));
    }
    if (f.g !== undefined) {
      const right = !f.e && f.g === f.l;
      header.append(el("span", { class: `truth ${right ? "right" : "wrong"}`, text: right ? `✓ ${f.g}` : `✗ truth: ${f.g}` }));
    }
    const node = el("article", { class: "file", "data-path": f.p, "data-label": f.l || "", "data-score": f.e ? "" : String(f.s) }, header);
    if (f.e) node.append(el("p", { class: "error", text: f.e }));
    if (f.th) node.append(strip(f));
    else if (f.te) node.append(el("p", { class: "thumb-error", text: `thumbnail: ${f.te}` }));
    if (f.c && f.d) node.append(...timeline(f));
    if (f.top && f.top.length > 1) {
      node.append(el("ol", { class: "top" }, ...f.top.map(([label, score]) => el("li", { text: `${label} ${fmt(score)}` }))));
    }
    return node;
  }
  function strip(f) {
    const box = el("a", { class: "strip", href: f.u, target: "_blank", rel: "noopener" },
      el("img", { src: f.th, loading: "lazy", alt: `frames of ${f.p}` }));
    if (f.t && f.t.length) box.append(el("div", { class: "times" }, ...f.t.map((t) => el("span", { text: seconds(t) }))));
    return box;
  }
  function timeline(f) {
    const bar = el("div", { class: "timeline" });
    for (const [start, end, label, score, from, to] of f.c) {
      bar.append(el("span", {
        class: "seg", title: `${seconds(from)}–${seconds(to)}: ${label} ${fmt(score)}`,
        style: `left:${(100 * start) / f.d}%;width:${(100 * (end - start)) / f.d}%;background:${colour(label)}`,
      }));
    }
    return [bar, el("div", { class: "axis" }, el("span", { text: "0 s" }), el("span", { text: seconds(f.d) }))];
  }

  function pager(state, pages) {
    for (const nav of document.querySelectorAll(".pager")) {
      nav.replaceChildren();
      if (pages <= 1) continue;
      const page = Number(state.page);
      const go = (p) => () => writeState({ ...state, page: String(p) });
      const button = (text, p, disabled) => {
        const b = el("button", { type: "button", text });
        b.disabled = disabled;
        b.onclick = go(p);
        return b;
      };
      nav.append(button("« first", 1, page <= 1), button("‹ previous", page - 1, page <= 1),
        el("span", { class: "page", text: ` page ${page} of ${pages} ` }),
        button("next ›", page + 1, page >= pages), button("last »", pages, page >= pages));
    }
  }

  function render() {
    const state = readState();
    for (const key of FIELDS) if ($(key).value !== state[key]) $(key).value = state[key];
    const shown = D.files.filter((f) => matches(f, state)).sort(SORTS[state.sort] || SORTS.score);
    const pages = Math.max(1, Math.ceil(shown.length / D.page_size));
    const page = Math.min(Math.max(1, Number(state.page) || 1), pages);
    state.page = String(page);
    const first = (page - 1) * D.page_size;
    $("files").replaceChildren(...shown.slice(first, first + D.page_size).map(fileView));
    $("shown-count").textContent = String(shown.length);
    const extra = [state.truth && `truth ${state.truth}`, state.pred && `predicted ${state.pred}`].filter(Boolean);
    $("status-text").textContent = `of ${D.files.length} files` + (shown.length ? `, ${first + 1}–${Math.min(first + D.page_size, shown.length)} shown` : "") + (extra.length ? ` (${extra.join(", ")})` : "");
    pager(state, pages);
    document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
  }

  function summary() {
    document.title = D.title;
    $("title").textContent = D.title;
    $("source").textContent = `${D.source} · ${D.created}`;
    const chips = [`${D.files.length} files`, `${D.counts.video} videos`, `${D.counts.image} images`, `${D.counts.error} failed`];
    if (D.counts.thumbnail_errors) chips.push(`${D.counts.thumbnail_errors} without thumbnails`);
    $("summary").append(...chips.map((text) => el("span", { text })));
    const labels = el("div", {});
    for (const [name, count] of D.label_counts) {
      labels.append(el("a", { href: `#cls=${encodeURIComponent(name)}` },
        el("span", { class: "chip", style: `border-left:6px solid ${colour(name)}`, text: `${name}: ${count}` })));
    }
    $("summary").append(labels);
    for (const name of D.classes) $("cls").append(el("option", { value: name, text: name }));
  }

  function truthSection() {
    const T = D.truth;
    if (!T) return;
    $("truth").hidden = false;
    $("correct-wrap").hidden = false;
    const acc = T.accuracy === null ? "no file with both a truth and a prediction" : `accuracy ${fmt(T.accuracy)} over ${T.count} files`;
    const parts = [`${acc} (truth: ${T.source})`];
    if (T.without) parts.push(`${T.without} files lie outside its class folders`);
    if (T.eval && T.eval.video_level) parts.push(`xmodal eval measured top-1 ${fmt(T.eval.video_level.top1)} (n=${T.eval.video_level.count})`);
    $("accuracy").textContent = parts.join("; ");
    const head = el("tr", {}, el("th", { class: "corner", text: "true ↓ / predicted →" }), ...T.labels.map((name) => el("th", { text: name })));
    const rows = T.labels.map((truth, i) => el("tr", {}, el("th", { text: truth }), ...T.matrix[i].map((n, j) => {
      const cell = el("td", { class: n ? (i === j ? "diag" : "off") : "" });
      if (n) {
        const params = new URLSearchParams({ truth, pred: T.labels[j] });
        cell.append(el("a", { href: `#${params}`, "data-true": truth, "data-pred": T.labels[j], text: String(n) }));
      } else cell.textContent = "0";
      return cell;
    })));
    $("matrix").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  }

  function controls() {
    for (const key of FIELDS) {
      $(key).addEventListener(key === "q" || key === "max" ? "input" : "change", () => {
        writeState({ ...readState(), [key]: $(key).value, page: "1" });
      });
    }
    $("reset").onclick = () => writeState({ ...DEFAULTS });
    window.addEventListener("hashchange", render);
  }

  summary();
  truthSection();
  controls();
  render();
  document.body.dataset.openMs = String(Math.round(performance.now()));
})();
