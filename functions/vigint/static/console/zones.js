// Zone editor of the camera page (templates/console/camera.html): polygons drawn in an SVG laid over the latest
// snapshot. "New zone", then a click on the snapshot adds a point; dragging a point moves it; "Close polygon"
// (or a click on the first point) ends the drawing; "Delete zone" removes the selected zone. The list under the
// snapshot edits each zone's name, labels and times, and (in "Points as numbers") every point as x and y
// fractions, for keyboard users. Every change is written to the hidden field "zones" as JSON:
// [{"name", "points": [[x, y], ...] (0..1 of the frame, x right, y down), "labels", "enter_s", "exit_s",
// "loiter_s"}], which the server validates (tenant API CameraPatch). No inline script: the CSP forbids it.
"use strict";
(() => {
  const editor = document.getElementById("zone-editor");
  const field = document.getElementById("zones-field");
  const svg = document.getElementById("zone-overlay");
  if (!editor || !field || !svg) return;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const readonly = editor.dataset.readonly === "true";
  const maxZones = parseInt(editor.dataset.maxZones || "32", 10);
  const list = document.getElementById("zone-list");
  const hint = document.getElementById("zone-hint");
  const btnNew = document.getElementById("zone-new");
  const btnClose = document.getElementById("zone-close");
  const btnDelete = document.getElementById("zone-delete");
  const snapshot = document.getElementById("zone-snapshot");

  const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
  const num = (v, d) => (typeof v === "number" && isFinite(v) ? v : d);

  function load() {
    let raw;
    try { raw = JSON.parse(field.value || "[]"); } catch (e) { raw = []; }
    if (!Array.isArray(raw)) raw = [];
    return raw.filter((z) => z && typeof z === "object").map((z) => ({
      name: String(z.name || ""),
      points: (Array.isArray(z.points) ? z.points : []).filter((p) => Array.isArray(p) && p.length === 2)
        .map((p) => [num(p[0], 0), num(p[1], 0)]),
      labels: Array.isArray(z.labels) ? z.labels.map(String) : [],
      enter_s: num(z.enter_s, 0), exit_s: num(z.exit_s, 0), loiter_s: num(z.loiter_s, 0),
    }));
  }

  const state = { zones: load(), selected: -1, drawing: false, drag: null };
  if (state.zones.length) state.selected = 0;

  function save() {
    field.value = JSON.stringify(state.zones.map((z) => ({
      name: z.name, points: z.points.map((p) => [round(p[0]), round(p[1])]), labels: z.labels,
      enter_s: z.enter_s, exit_s: z.exit_s, loiter_s: z.loiter_s,
    })));
  }

  function say(text) { if (hint) hint.textContent = text; }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === true) node.setAttribute(k, "");
      else if (v !== false && v !== null && v !== undefined) node.setAttribute(k, String(v));
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  // ------------------------------------------------------------------------------------------- drawing
  function drawSvg() {
    const rect = svg.getBoundingClientRect();
    const w = Math.max(1, rect.width), h = Math.max(1, rect.height);
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    state.zones.forEach((z, i) => {
      const selected = i === state.selected;
      const pts = z.points.map((p) => `${p[0] * w},${p[1] * h}`).join(" ");
      const open = selected && state.drawing;
      const shape = svgEl(open ? "polyline" : "polygon", {
        points: pts, class: `zone-shape${selected ? " zone-selected" : ""}${open ? " zone-open" : ""}`,
        "data-zone": i,
      });
      svg.appendChild(shape);
      if (z.points.length) {
        const label = svgEl("text", { x: z.points[0][0] * w + 8, y: z.points[0][1] * h - 8, class: "zone-label" });
        label.textContent = z.name || `zone ${i + 1}`;
        svg.appendChild(label);
      }
      if (selected && !readonly) {
        z.points.forEach((p, j) => {
          svg.appendChild(svgEl("circle", {
            cx: p[0] * w, cy: p[1] * h, r: 9, class: `zone-handle${j === 0 && open ? " zone-first" : ""}`,
            "data-zone": i, "data-point": j,
          }));
        });
      }
    });
  }

  function position(event) {
    const rect = svg.getBoundingClientRect();
    return [round((event.clientX - rect.left) / rect.width), round((event.clientY - rect.top) / rect.height)];
  }

  function uniqueName() {
    const names = new Set(state.zones.map((z) => z.name));
    for (let n = state.zones.length + 1; ; n++) if (!names.has(`zone-${n}`)) return `zone-${n}`;
  }

  function closePolygon() {
    const z = state.zones[state.selected];
    if (!z) return;
    if (z.points.length < 3) { say("A zone needs at least 3 points."); return; }
    state.drawing = false;
    say(`Zone ${z.name} closed with ${z.points.length} points. Drag a point to move it.`);
    refresh();
  }

  // ---------------------------------------------------------------------------------------- the list
  function numberInput(label, value, min, max, step, onChange) {
    const wrap = el("label", {}, label + " ");
    const input = el("input", { type: "number", min, max, step, value });
    input.addEventListener("input", () => {
      const v = parseFloat(input.value);
      if (isFinite(v)) { onChange(v); save(); drawSvg(); }
    });
    wrap.appendChild(input);
    return wrap;
  }

  function drawList() {
    if (!list) return;
    list.replaceChildren();
    if (!state.zones.length) {
      list.appendChild(el("p", {}, readonly ? "No zones." : "No zones yet."));
      return;
    }
    const picker = el("div", { class: "zone-picker", role: "group", "aria-label": "Zones" });
    state.zones.forEach((z, i) => {
      const b = el("button", { type: "button", class: i === state.selected ? "" : "outline",
                               "aria-pressed": i === state.selected ? "true" : "false" },
                   `${z.name || "zone " + (i + 1)} (${z.points.length} points)`);
      b.addEventListener("click", () => { state.selected = i; state.drawing = false; refresh(); });
      picker.appendChild(b);
    });
    list.appendChild(picker);
    const z = state.zones[state.selected];
    if (!z) return;
    const box = el("fieldset", { class: "zone-fields", disabled: readonly });
    box.appendChild(el("legend", {}, `Zone ${state.selected + 1}`));
    const row = el("div", { class: "grid" });
    const nameLabel = el("label", {}, "Zone name ");
    const name = el("input", { type: "text", value: z.name, pattern: "[a-z0-9][a-z0-9-]{1,62}", required: true,
                                "aria-describedby": "zone-name-help" });
    name.addEventListener("input", () => {
      z.name = name.value.trim(); save(); drawSvg();
      const b = picker.children[state.selected];
      if (b) b.textContent = `${z.name || "zone " + (state.selected + 1)} (${z.points.length} points)`;
    });
    nameLabel.appendChild(name);
    nameLabel.appendChild(el("small", { id: "zone-name-help" }, "Lower-case letters, digits and dashes."));
    row.appendChild(nameLabel);
    const labelsLabel = el("label", {}, "Zone labels ");
    const labels = el("input", { type: "text", value: z.labels.join(", "), "aria-describedby": "zone-labels-help" });
    labels.addEventListener("input", () => {
      z.labels = labels.value.split(",").map((s) => s.trim()).filter(Boolean); save();
    });
    labelsLabel.appendChild(labels);
    labelsLabel.appendChild(el("small", { id: "zone-labels-help" }, "Comma-separated; empty: every label."));
    row.appendChild(labelsLabel);
    box.appendChild(row);
    const times = el("div", { class: "grid" });
    times.appendChild(numberInput("Seconds inside to enter", z.enter_s, 0, 3600, 0.1, (v) => { z.enter_s = v; }));
    times.appendChild(numberInput("Seconds outside to leave", z.exit_s, 0, 3600, 0.1, (v) => { z.exit_s = v; }));
    times.appendChild(numberInput("Loitering after (s, 0: off)", z.loiter_s, 0, 86400, 1, (v) => { z.loiter_s = v; }));
    box.appendChild(times);

    const details = el("details", { class: "zone-points" });
    details.open = state.pointsOpen === true;
    details.addEventListener("toggle", () => { state.pointsOpen = details.open; });
    details.appendChild(el("summary", {}, "Points as numbers (0 to 1 across and down)"));
    const ol = el("ol", {});
    z.points.forEach((p, j) => {
      const li = el("li", { class: "zone-point" });
      li.appendChild(numberInput(`Point ${j + 1} x`, p[0], 0, 1, 0.0001, (v) => { p[0] = round(v); }));
      li.appendChild(numberInput(`Point ${j + 1} y`, p[1], 0, 1, 0.0001, (v) => { p[1] = round(v); }));
      if (!readonly) {
        const rm = el("button", { type: "button", class: "secondary outline small" }, `Remove point ${j + 1}`);
        rm.addEventListener("click", () => { z.points.splice(j, 1); refresh(); });
        li.appendChild(rm);
      }
      ol.appendChild(li);
    });
    details.appendChild(ol);
    if (!readonly) {
      const add = el("button", { type: "button", class: "secondary small" }, "Add a point");
      add.addEventListener("click", () => {
        const last = z.points[z.points.length - 1] || [0.5, 0.5];
        z.points.push([round(last[0] + 0.05), round(last[1])]);
        refresh();
      });
      details.appendChild(add);
    }
    box.appendChild(details);
    list.appendChild(box);
  }

  function refresh() {
    save();
    drawSvg();
    drawList();
    if (btnClose) btnClose.disabled = !state.drawing;
    if (btnDelete) btnDelete.disabled = state.selected < 0;
    if (btnNew) btnNew.disabled = state.zones.length >= maxZones;
  }

  // ------------------------------------------------------------------------------------------ events
  if (!readonly) {
    btnNew.addEventListener("click", () => {
      if (state.zones.length >= maxZones) return;
      state.zones.push({ name: uniqueName(), points: [], labels: [], enter_s: 0, exit_s: 0, loiter_s: 0 });
      state.selected = state.zones.length - 1;
      state.drawing = true;
      say("Click on the snapshot to add points, then press “Close polygon”.");
      refresh();
    });
    btnClose.addEventListener("click", closePolygon);
    btnDelete.addEventListener("click", () => {
      if (state.selected < 0) return;
      const [gone] = state.zones.splice(state.selected, 1);
      state.selected = state.zones.length ? Math.min(state.selected, state.zones.length - 1) : -1;
      state.drawing = false;
      say(`Zone ${gone.name} deleted (saved when you save the camera).`);
      refresh();
    });

    svg.addEventListener("pointerdown", (event) => {
      const t = event.target;
      if (t.classList && t.classList.contains("zone-handle")) {
        const zi = parseInt(t.dataset.zone, 10), pj = parseInt(t.dataset.point, 10);
        if (state.drawing && pj === 0 && state.zones[zi].points.length >= 3) { closePolygon(); return; }
        state.drag = { zone: zi, point: pj, moved: false };
        svg.setPointerCapture(event.pointerId);
        event.preventDefault();
        return;
      }
      if (state.drawing && state.zones[state.selected]) {
        state.zones[state.selected].points.push(position(event));
        event.preventDefault();
        refresh();
        return;
      }
      if (t.dataset && t.dataset.zone !== undefined) {
        state.selected = parseInt(t.dataset.zone, 10);
        refresh();
      }
    });
    svg.addEventListener("pointermove", (event) => {
      if (!state.drag) return;
      const z = state.zones[state.drag.zone];
      z.points[state.drag.point] = position(event);
      state.drag.moved = true;
      save();
      drawSvg();
    });
    const endDrag = () => {
      if (!state.drag) return;
      state.drag = null;
      refresh();
    };
    svg.addEventListener("pointerup", endDrag);
    svg.addEventListener("pointercancel", endDrag);

    const form = field.form;
    if (form) {
      form.addEventListener("submit", () => {
        const z = state.zones[state.selected];
        if (state.drawing && z && z.points.length >= 3) state.drawing = false;
        save();
      });
    }
  }

  if (snapshot && snapshot.tagName === "IMG" && !snapshot.complete) snapshot.addEventListener("load", drawSvg);
  if (typeof ResizeObserver === "function") new ResizeObserver(drawSvg).observe(svg);
  window.addEventListener("resize", drawSvg);
  refresh();
})();
