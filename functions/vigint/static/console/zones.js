// Zone and mask editor of the camera page (templates/console/camera.html): polygons drawn in an SVG laid over
// the latest snapshot. "New zone" (or "New mask"), then a click on the snapshot adds a point; dragging a point
// moves it; "Close polygon" (or a click on the first point) ends the drawing; "Delete" removes the selected
// shape. Zones are yellow/blue; masks (where the device ignores detections) dark grey, hatched, with a dashed
// white stroke. The list under the snapshot edits each zone's name, labels, times and "Alert zone" box, and
// (in "Points as numbers") every point of a zone or mask as x and y fractions, for keyboard users. Every change
// is written to the hidden fields as JSON: "zones" [{"name", "points": [[x, y], ...] (0..1 of the frame, x
// right, y down), "labels", "enter_s", "exit_s", "loiter_s"}], "masks" [[[x, y], ...]] and "alert_zones"
// [zone name]; "masks"/"alert_zones" stay null (the device keeps its own) until a mask is drawn or deleted /
// an alert box is changed. The server validates them (tenant API CameraPatch). No inline script (CSP).
"use strict";
(() => {
  const editor = document.getElementById("zone-editor");
  const field = document.getElementById("zones-field");
  const masksField = document.getElementById("masks-field");
  const alertField = document.getElementById("alert-zones-field");
  const svg = document.getElementById("zone-overlay");
  if (!editor || !field || !svg) return;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const readonly = editor.dataset.readonly === "true";
  const maxZones = parseInt(editor.dataset.maxZones || "32", 10);
  const maxMasks = parseInt(editor.dataset.maxMasks || "32", 10);
  const btnMask = document.getElementById("mask-new");
  const list = document.getElementById("zone-list");
  const hint = document.getElementById("zone-hint");
  const btnNew = document.getElementById("zone-new");
  const btnClose = document.getElementById("zone-close");
  const btnDelete = document.getElementById("zone-delete");
  const masksNote = document.getElementById("masks-note");
  const alertNote = document.getElementById("alert-zones-note");
  const snapshot = document.getElementById("zone-snapshot");

  const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
  const num = (v, d) => (typeof v === "number" && isFinite(v) ? v : d);

  function parse(input, fallback) {
    if (!input) return fallback;
    try { return JSON.parse(input.value || "null"); } catch (e) { return fallback; }
  }
  const points = (raw) => (Array.isArray(raw) ? raw : []).filter((p) => Array.isArray(p) && p.length === 2)
    .map((p) => [num(p[0], 0), num(p[1], 0)]);

  // One list of shapes: zones (kind "zone") then masks (kind "mask"); selection and dragging use its indexes.
  function load() {
    let raw = parse(field, []);
    if (!Array.isArray(raw)) raw = [];
    let alerts = parse(alertField, null);
    alerts = Array.isArray(alerts) ? alerts.map(String) : null;
    const zones = raw.filter((z) => z && typeof z === "object").map((z) => ({
      kind: "zone", name: String(z.name || ""), points: points(z.points),
      labels: Array.isArray(z.labels) ? z.labels.map(String) : [],
      enter_s: num(z.enter_s, 0), exit_s: num(z.exit_s, 0), loiter_s: num(z.loiter_s, 0),
      alert: alerts !== null && alerts.includes(String(z.name || "")),
    }));
    const masks = parse(masksField, null);
    const maskShapes = (Array.isArray(masks) ? masks : []).map((m) => ({ kind: "mask", points: points(m) }));
    return { shapes: zones.concat(maskShapes), masksSet: Array.isArray(masks), alertsSet: alerts !== null };
  }

  const loaded = load();
  const state = { shapes: loaded.shapes, masksSet: loaded.masksSet, alertsSet: loaded.alertsSet,
                  selected: -1, drawing: false, drag: null };
  if (state.shapes.length) state.selected = 0;
  const zonesOf = () => state.shapes.filter((s) => s.kind === "zone");
  const masksOf = () => state.shapes.filter((s) => s.kind === "mask");
  const rounded = (pts) => pts.map((p) => [round(p[0]), round(p[1])]);

  function save() {
    field.value = JSON.stringify(zonesOf().map((z) => ({
      name: z.name, points: rounded(z.points), labels: z.labels,
      enter_s: z.enter_s, exit_s: z.exit_s, loiter_s: z.loiter_s,
    })));
    if (masksField) masksField.value = state.masksSet ? JSON.stringify(masksOf().map((m) => rounded(m.points))) : "null";
    if (alertField) {
      alertField.value = state.alertsSet ? JSON.stringify(zonesOf().filter((z) => z.alert).map((z) => z.name)) : "null";
    }
    if (masksNote) masksNote.hidden = state.masksSet;
    if (alertNote) alertNote.hidden = state.alertsSet;
  }

  function title(s, i) {
    if (s.kind === "mask") return `Mask ${masksOf().indexOf(s) + 1}`;
    return s.name || `zone ${i + 1}`;
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
    // the hatching of masks: an SVG pattern (CSS cannot hatch an SVG fill); redrawn with the rest
    const defs = svgEl("defs", {});
    const pattern = svgEl("pattern", { id: "mask-hatch", width: 8, height: 8, patternUnits: "userSpaceOnUse",
                                       patternTransform: "rotate(45)" });
    pattern.appendChild(svgEl("rect", { width: 8, height: 8, class: "mask-hatch-bg" }));
    pattern.appendChild(svgEl("line", { x1: 0, y1: 0, x2: 0, y2: 8, class: "mask-hatch-line" }));
    defs.appendChild(pattern);
    svg.appendChild(defs);
    state.shapes.forEach((z, i) => {
      const selected = i === state.selected;
      const pts = z.points.map((p) => `${p[0] * w},${p[1] * h}`).join(" ");
      const open = selected && state.drawing;
      const base = z.kind === "mask" ? "mask-shape" : "zone-shape";
      const shape = svgEl(open ? "polyline" : "polygon", {
        points: pts, class: `${base}${selected ? " zone-selected" : ""}${open ? " zone-open" : ""}`,
        "data-zone": i,
      });
      svg.appendChild(shape);
      if (z.points.length) {
        const label = svgEl("text", { x: Math.min(z.points[0][0] * w + 8, w - 60), y: Math.max(16, z.points[0][1] * h - 8),
                                      class: z.kind === "mask" ? "zone-label mask-label" : "zone-label" });
        label.textContent = z.kind === "zone" && z.alert ? `${title(z, i)} (alert)` : title(z, i);
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
    const zones = zonesOf();
    const names = new Set(zones.map((z) => z.name));
    for (let n = zones.length + 1; ; n++) if (!names.has(`zone-${n}`)) return `zone-${n}`;
  }

  function closePolygon() {
    const z = state.shapes[state.selected];
    if (!z) return;
    const what = z.kind === "mask" ? "A mask" : "A zone";
    if (z.points.length < 3) { say(`${what} needs at least 3 points.`); return; }
    state.drawing = false;
    say(`${title(z, state.selected)} closed with ${z.points.length} points. Drag a point to move it.`);
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
    if (!state.shapes.length) {
      list.appendChild(el("p", {}, readonly ? "No zones or masks." : "No zones or masks yet."));
      return;
    }
    const picker = el("div", { class: "zone-picker", role: "group", "aria-label": "Zones and masks" });
    state.shapes.forEach((z, i) => {
      const b = el("button", { type: "button",
                               class: `${i === state.selected ? "" : "outline"}${z.kind === "mask" ? " secondary" : ""}`,
                               "aria-pressed": i === state.selected ? "true" : "false" },
                   `${title(z, i)} (${z.points.length} points)`);
      b.addEventListener("click", () => { state.selected = i; state.drawing = false; refresh(); });
      picker.appendChild(b);
    });
    list.appendChild(picker);
    const z = state.shapes[state.selected];
    if (!z) return;
    const box = el("fieldset", { class: "zone-fields", disabled: readonly });
    if (z.kind === "mask") {
      box.appendChild(el("legend", {}, title(z, state.selected)));
      box.appendChild(el("p", {}, "Detections whose feet (the middle of the box's bottom edge) are inside are ignored."));
      box.appendChild(pointsEditor(z));
      list.appendChild(box);
      return;
    }
    box.appendChild(el("legend", {}, `Zone ${zonesOf().indexOf(z) + 1}`));
    const row = el("div", { class: "grid" });
    const nameLabel = el("label", {}, "Zone name ");
    const name = el("input", { type: "text", value: z.name, pattern: "[a-z0-9][a-z0-9-]{1,62}", required: true,
                                "aria-describedby": "zone-name-help" });
    name.addEventListener("input", () => {
      z.name = name.value.trim(); save(); drawSvg();
      const b = picker.children[state.selected];
      if (b) b.textContent = `${title(z, state.selected)} (${z.points.length} points)`;
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
    const alertLabel = el("label", {});
    const alert = el("input", { type: "checkbox", checked: z.alert, "aria-describedby": "zone-alert-help" });
    alert.addEventListener("change", () => {
      state.alertsSet = true;  // from now on the console decides the alert zones, not the device's file
      z.alert = alert.checked; save(); drawSvg();
    });
    alertLabel.appendChild(alert);
    alertLabel.appendChild(document.createTextNode(" Alert zone (alerts need an alert label inside)"));
    box.appendChild(alertLabel);
    box.appendChild(el("small", { id: "zone-alert-help", class: "zone-alert-help" },
                       "When some zones are alert zones, an alert label outside all of them is only a detection."));
    box.appendChild(pointsEditor(z));
    list.appendChild(box);
  }

  function pointsEditor(z) {
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
    return details;
  }

  function refresh() {
    save();
    drawSvg();
    drawList();
    if (btnClose) btnClose.disabled = !state.drawing;
    const sel = state.shapes[state.selected];
    if (btnDelete) {
      btnDelete.disabled = !sel;
      btnDelete.textContent = sel && sel.kind === "mask" ? "Delete mask" : "Delete zone";
    }
    if (btnNew) btnNew.disabled = zonesOf().length >= maxZones;
    if (btnMask) btnMask.disabled = masksOf().length >= maxMasks;
  }

  function startShape(shape, text) {
    // a new zone goes after the zones, a new mask at the end: zones first keeps the saved order
    const at = shape.kind === "zone" ? zonesOf().length : state.shapes.length;
    state.shapes.splice(at, 0, shape);
    state.selected = at;
    state.drawing = true;
    say(text);
    refresh();
  }

  // ------------------------------------------------------------------------------------------ events
  if (!readonly) {
    btnNew.addEventListener("click", () => {
      if (zonesOf().length >= maxZones) return;
      startShape({ kind: "zone", name: uniqueName(), points: [], labels: [], enter_s: 0, exit_s: 0, loiter_s: 0,
                   alert: false },
                 "Click on the snapshot to add points, then press “Close polygon”.");
    });
    if (btnMask) {
      btnMask.addEventListener("click", () => {
        if (masksOf().length >= maxMasks) return;
        state.masksSet = true;  // from now on the console decides the masks, not the device's file
        startShape({ kind: "mask", points: [] },
                   "Click on the snapshot to add the mask's points, then press “Close polygon”.");
      });
    }
    btnClose.addEventListener("click", closePolygon);
    btnDelete.addEventListener("click", () => {
      const gone = state.shapes[state.selected];
      if (!gone) return;
      const name = title(gone, state.selected);
      state.shapes.splice(state.selected, 1);
      if (gone.kind === "mask") state.masksSet = true;
      state.selected = state.shapes.length ? Math.min(state.selected, state.shapes.length - 1) : -1;
      state.drawing = false;
      say(`${name} deleted (saved when you save the camera).`);
      refresh();
    });

    svg.addEventListener("pointerdown", (event) => {
      const t = event.target;
      if (t.classList && t.classList.contains("zone-handle")) {
        const zi = parseInt(t.dataset.zone, 10), pj = parseInt(t.dataset.point, 10);
        if (state.drawing && pj === 0 && state.shapes[zi].points.length >= 3) { closePolygon(); return; }
        state.drag = { zone: zi, point: pj, moved: false };
        svg.setPointerCapture(event.pointerId);
        event.preventDefault();
        return;
      }
      if (state.drawing && state.shapes[state.selected]) {
        state.shapes[state.selected].points.push(position(event));
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
      const z = state.shapes[state.drag.zone];
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
        const z = state.shapes[state.selected];
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
