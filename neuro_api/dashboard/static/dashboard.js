// neuro_api dashboard: the live parts of the server-rendered pages.
// Rules: the DOM is built with createElement/textContent only (never
// innerHTML: games supply titles, schemas and messages); everything kept in
// the page is bounded (frame log, rendered text, form size).
"use strict";

(function () {
  const MAX_TEXT = 2000; // characters of one frame or message shown
  const MAX_SCHEMA_TEXT = 65536; // characters of a pretty-printed schema
  const MAX_FIELDS = 50; // properties or items made into inputs, per level
  const MAX_DEPTH = 4; // deeper parts of a schema are edited as JSON
  const MAX_CHOICES = 500; // more enum choices are typed, not picked
  const MAX_FORM_INPUTS = 200; // inputs one action's form makes; more is edited as JSON
  const MAX_PAGE_INPUTS = 5000; // inputs all forms of a page make together
  const body = document.body;
  const page = body.dataset.page;
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function cap(text, limit) {
    const max = limit || MAX_TEXT;
    const value = String(text === null || text === undefined ? "" : text);
    return value.length > max ? value.slice(0, max) + " … (" + (value.length - max) + " more characters)" : value;
  }

  async function api(method, path, payload, raw) {
    const init = {
      method: method,
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
    };
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = raw ? payload : JSON.stringify(payload);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      return { status: 0, body: { error: { code: "network", message: String(error) } } };
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    return { status: response.status, body: data };
  }

  function errorText(result) {
    const error = result.body && result.body.error;
    if (error) return error.code + ": " + cap(error.message);
    return "HTTP " + result.status;
  }

  function setLive(text) {
    const node = document.getElementById("live-state");
    if (node) node.textContent = text;
  }

  // A function that has fn (async) run soon: never twice at once, and each
  // run at least `wait` ms, or four times as long as the last one took,
  // after the last one ended. A game's frames each ask for a refresh: with
  // large actions, refreshes one after another would keep the server busy.
  function paced(fn, wait) {
    let timer = null;
    let running = false;
    let again = false;
    let gap = wait;
    async function run() {
      timer = null;
      running = true;
      const started = Date.now();
      try {
        await fn();
      } finally {
        running = false;
        gap = Math.max(wait, 4 * (Date.now() - started));
        if (again) {
          again = false;
          schedule();
        }
      }
    }
    function schedule() {
      if (running) again = true;
      else if (timer === null) timer = setTimeout(run, gap);
    }
    return schedule;
  }

  // The live events; listeners get (kind, data). One EventSource for all of
  // this browser's dashboard tabs: each would hold one of the six
  // connections a browser opens to a host, and a seventh tab would not load
  // at all. The tab holding the lock reads the stream and passes every event
  // on to the others; when it goes, another takes the lock. Without locks
  // (a page not served over https nor from loopback), each tab has its own.
  function listen(handler) {
    if (!window.EventSource) return;
    const channel = window.BroadcastChannel ? new BroadcastChannel("neuro-api-events") : null;
    function open(share) {
      const source = new EventSource("/events");
      const state = function (text) {
        setLive(text);
        if (share) channel.postMessage({ state: text });
      };
      source.onopen = function () { state("live"); };
      source.onerror = function () { state("reconnecting…"); };
      for (const kind of ["frame.in", "frame.out", "diagnostic", "dropped"]) {
        source.addEventListener(kind, function (event) {
          let data = null;
          try { data = JSON.parse(event.data); } catch (error) { return; }
          handler(kind, data);
          if (share) channel.postMessage({ kind: kind, data: data });
        });
      }
      return source;
    }
    if (!channel || !navigator.locks) {
      const source = open(false);
      window.addEventListener("pagehide", function () { source.close(); });
      return;
    }
    let leading = false;
    channel.onmessage = function (message) {
      const event = message.data || {};
      if (leading) return;
      if (typeof event.state === "string") setLive(event.state);
      else if (typeof event.kind === "string") handler(event.kind, event.data);
    };
    setLive("live (another tab reads the events)");
    navigator.locks.request("neuro-api-events", function () {
      leading = true;
      const source = open(true);
      return new Promise(function (resolve) {
        window.addEventListener("pagehide", function () { source.close(); resolve(); });
      });
    });
    window.addEventListener("pagehide", function () { channel.close(); });
  }

  function gamePath(session) {
    return "/games/" + encodeURIComponent(session);
  }

  // --- games page -------------------------------------------------------------

  function gameCard(game) {
    const session = game.session_id;
    const force = game.force;
    return el("article", { className: "card game", "data-session": session },
      el("h2", {}, el("a", { className: "game-title", href: "/ui" + gamePath(session), text: cap(game.game || session, 200) })),
      el("p", { className: "muted" }, "session ", el("code", { text: session })),
      el("p", {}, (game.actions || []).length + " actions · frames " + game.frames_in + " in / " + game.frames_out + " out · " +
        (game.pending_ids || []).length + " pending"),
      force ? el("p", { className: "force-line", text: "force: " + cap(force.query, 200) + " (" + force.state + ")" }) : null,
      (game.held_by || []).length ? el("p", { className: "held", text: "held by " + game.held_by.join(", ") }) : null);
  }

  async function refreshGames() {
    const result = await api("GET", "/games");
    const box = document.getElementById("games");
    if (!box || result.status !== 200) {
      setLive("cannot list games: " + errorText(result));
      return;
    }
    const games = result.body.games || [];
    const nodes = games.map(gameCard);
    if (!nodes.length) nodes.push(el("p", { className: "empty", text: "No game connected." }));
    box.replaceChildren(...nodes);
  }

  function setupAllButtons() {
    const out = document.getElementById("all-result");
    for (const button of document.querySelectorAll("button[data-all-op]")) {
      button.addEventListener("click", async function () {
        const result = await api("POST", "/games/*/" + button.dataset.allOp, {});
        out.textContent = result.status === 200 ? "sent to: " + (result.body.sent_to || []).join(", ") : errorText(result);
      });
    }
    const form = document.getElementById("raw-message");
    if (form) {
      form.addEventListener("submit", async function (event) {
        event.preventDefault();
        const result = await api("POST", "/", form.elements.message.value, true);
        out.textContent = result.status === 200 ? "sent to: " + (result.body.sent_to || []).join(", ") : errorText(result);
      });
    }
  }

  function gamesPage() {
    setupAllButtons();
    const refresh = paced(refreshGames, 300);
    listen(function () { refresh(); });
    refreshGames();
    setInterval(refresh, 3000); // disconnects send no event
  }

  // --- schema-generated forms ---------------------------------------------------

  function typeOf(schema) {
    if (!schema || typeof schema !== "object") return "json";
    if (Array.isArray(schema.enum) && schema.enum.length <= 200) return "enum";
    let type = schema.type;
    if (Array.isArray(type)) type = type.filter(function (t) { return t !== "null"; })[0];
    if (!type && schema.properties) type = "object";
    if (["string", "number", "integer", "boolean", "array", "object"].indexOf(type) >= 0) return type;
    return "json";
  }

  let fieldCounter = 0;

  // Inputs are counted, per form and per page: per level alone, a schema of
  // 700 KB (16 properties on each of 4 levels) made 65,536 inputs, and a
  // game may register a thousand actions. A form's budget: {left, used, page},
  // page: {left}. An object is made into inputs only while both have room
  // for one input per property; an array takes an item only with room left.
  function newBudget(page) {
    return { left: MAX_FORM_INPUTS, used: 0, page: page };
  }

  function hasRoom(budget, count) {
    return budget.left >= count && budget.page.left >= count;
  }

  function spend(budget, count) {
    budget.left -= count;
    budget.used += count;
    budget.page.left -= count;
  }

  // A field: {node, get() -> value, set(value) -> bool}
  function makeField(schema, label, depth, budget) {
    const id = "f" + (++fieldCounter);
    const type = depth > MAX_DEPTH ? "json" : typeOf(schema);
    const title = cap(label, 200);
    const described = schema && typeof schema.description === "string" ? el("small", { className: "muted", text: cap(schema.description, 300) }) : null;
    if (type !== "object" && type !== "array") spend(budget, 1);
    if (type === "object") {
      const props = Object.entries(schema.properties || {});
      if (props.length > MAX_FIELDS || schema.additionalProperties === true || !hasRoom(budget, props.length)) {
        spend(budget, 1);
        return jsonField(schema, title, id, described);
      }
      const fields = props.map(function (entry) { return [entry[0], makeField(entry[1], entry[0], depth + 1, budget)]; });
      const node = el("fieldset", { className: "object" }, el("legend", { text: title || "data" }), described);
      for (const pair of fields) node.append(pair[1].node);
      const required = new Set(schema.required || []);
      return {
        node: node,
        get: function () {
          const value = {};
          for (const pair of fields) {
            const item = pair[1].get();
            // Defined, not assigned: "__proto__" is a property name a game may
            // use, and assigning it would set the object's prototype instead.
            if (item !== undefined || required.has(pair[0])) {
              Object.defineProperty(value, pair[0], { value: item, enumerable: true, writable: true, configurable: true });
            }
          }
          return value;
        },
        set: function (value) {
          if (!value || typeof value !== "object" || Array.isArray(value)) return false;
          for (const key of Object.keys(value)) {
            if (!fields.some(function (pair) { return pair[0] === key; })) return false;
          }
          return fields.every(function (pair) { return pair[1].set(value[pair[0]]); });
        },
      };
    }
    if (type === "array") {
      const itemSchema = schema.items && typeof schema.items === "object" ? schema.items : {};
      const list = el("ol", { className: "items" });
      const items = [];
      const drop = function (entry) {
        items.splice(items.indexOf(entry), 1);
        entry.row.remove();
        spend(budget, -entry.cost); // items added inside it later stay counted
      };
      const add = function (value) {
        if (items.length >= MAX_FIELDS || !hasRoom(budget, 1)) return false;
        const before = budget.used;
        const field = makeField(itemSchema, "item", depth + 1, budget);
        const row = el("li", {}, field.node);
        const entry = { field: field, row: row, cost: budget.used - before };
        row.append(el("button", { type: "button", className: "small", text: "remove", onclick: function () { drop(entry); } }));
        items.push(entry);
        list.append(row);
        return value === undefined ? true : field.set(value);
      };
      const node = el("fieldset", { className: "array" }, el("legend", { text: title }), described, list,
        el("button", { type: "button", className: "small", text: "add item", onclick: function () { add(); } }));
      return {
        node: node,
        get: function () { return items.map(function (entry) { return entry.field.get(); }); },
        set: function (value) {
          if (!Array.isArray(value) || value.length > MAX_FIELDS) return false;
          for (const entry of items.slice()) drop(entry);
          return value.every(function (item) { return add(item); });
        },
      };
    }
    let input;
    if (type === "enum" && schema.enum.length > MAX_CHOICES) {
      // Thousands of options would make a select slow to build and to use:
      // type the choice (as JSON); the server's validator judges it.
      input = el("input", { id: id, name: label, type: "text", spellcheck: "false",
        placeholder: "one of " + schema.enum.length + " choices, as JSON" });
      return labelled(input, title, id, described, function () {
        if (input.value.trim() === "") return undefined;
        try { return JSON.parse(input.value); } catch (error) { return input.value; }
      }, function (value) {
        input.value = value === undefined ? "" : JSON.stringify(value);
        return true;
      });
    }
    if (type === "enum") {
      input = el("select", { id: id, name: label });
      input.append(el("option", { value: "", text: "(none)" }));
      schema.enum.forEach(function (choice, index) {
        input.append(el("option", { value: String(index), text: cap(JSON.stringify(choice), 200) }));
      });
      return labelled(input, title, id, described, function () {
        return input.value === "" ? undefined : schema.enum[Number(input.value)];
      }, function (value) {
        const index = schema.enum.findIndex(function (choice) { return JSON.stringify(choice) === JSON.stringify(value); });
        if (index < 0 && value !== undefined) return false;
        input.value = index < 0 ? "" : String(index);
        return true;
      });
    }
    if (type === "boolean") {
      input = el("input", { id: id, name: label, type: "checkbox" });
      return labelled(input, title, id, described, function () { return input.checked; }, function (value) {
        if (typeof value !== "boolean" && value !== undefined) return false;
        input.checked = value === true;
        return true;
      });
    }
    if (type === "number" || type === "integer") {
      input = el("input", { id: id, name: label, type: "number", step: type === "integer" ? "1" : "any",
        min: schema.minimum, max: schema.maximum });
      return labelled(input, title, id, described, function () {
        return input.value === "" ? undefined : Number(input.value);
      }, function (value) {
        if (typeof value !== "number" && value !== undefined) return false;
        input.value = value === undefined ? "" : String(value);
        return true;
      });
    }
    if (type === "string") {
      input = el("input", { id: id, name: label, type: "text", maxlength: schema.maxLength });
      return labelled(input, title, id, described, function () { return input.value; }, function (value) {
        if (typeof value !== "string" && value !== undefined) return false;
        input.value = value === undefined ? "" : value;
        return true;
      });
    }
    return jsonField(schema, title, id, described);
  }

  function labelled(input, title, id, described, get, set) {
    const node = el("div", { className: "field" }, el("label", { for: id, text: title }), input, described);
    return { node: node, get: get, set: set };
  }

  function jsonField(schema, title, id, described) {
    const area = el("textarea", { id: id, name: title, rows: "3", spellcheck: "false", placeholder: "JSON" });
    return labelled(area, title + " (JSON)", id, described, function () {
      if (area.value.trim() === "") return undefined;
      try { return JSON.parse(area.value); } catch (error) { throw new Error(title + ": not JSON: " + error.message); }
    }, function (value) {
      area.value = value === undefined ? "" : JSON.stringify(value, null, 2);
      return true;
    });
  }

  // --- one game's page -------------------------------------------------------------

  function gamePage() {
    const session = body.dataset.session;
    const maxRetries = Number(body.dataset.maxRetries) || 0;
    const frameLimit = Math.max(1, Number(body.dataset.frameLog) || 500);
    const actionsBox = document.getElementById("actions");
    const outcome = document.querySelector(".outcome");
    const rendered = new Map(); // action name -> schema text it was built from
    const cards = new Map(); // action name -> its card element
    const pageBudget = { left: MAX_PAGE_INPUTS };
    const budgets = new Map(); // action name -> its form's budget

    // A card's inputs go back to the page's budget when it goes.
    function release(name) {
      const budget = budgets.get(name);
      if (budget) pageBudget.left += budget.used;
      budgets.delete(name);
    }
    let title = null;
    let forceKey = null;

    function showOutcome(kind, text) {
      outcome.hidden = false;
      outcome.className = "outcome outcome-" + kind;
      outcome.dataset.status = kind;
      outcome.replaceChildren(el("strong", { text: kind }), el("span", { text: " " + cap(text) }));
    }

    // The result timer runs for an action sent and not answered yet: the
    // server says how long it has left; the page counts down from there.
    let timerDue = null;

    function renderForce(force, pending) {
      const box = document.getElementById("force-box");
      const waiting = (pending || []).map(function (p) { return Number(p.seconds_left); });
      timerDue = waiting.length ? Date.now() + Math.min.apply(null, waiting) * 1000 : null;
      if (!force) {
        forceKey = null;
        box.replaceChildren(el("p", { className: "empty", text: "No force in progress." }));
        return;
      }
      forceKey = JSON.stringify([force.query, force.action_names]);
      const retries = force.retries_left === undefined ? maxRetries : force.retries_left;
      box.replaceChildren(el("div", { className: "force card" },
        el("p", {}, el("strong", { text: "Query: " }), el("span", { className: "force-query", text: cap(force.query) })),
        el("p", {}, "State: ", el("span", { className: "force-state", text: cap(force.state, 200) }),
          " · priority: ", el("span", { className: "force-priority", text: String(force.priority) }),
          " · ephemeral: ", el("span", { text: force.ephemeral_context ? "yes" : "no" })),
        el("p", { text: "Actions: " + cap((force.action_names || []).join(", "), 500) }),
        el("p", {}, "Retries left: ", el("span", { className: "force-retries", text: String(retries) }),
          " · result timer: ", el("span", { className: "force-timer", text: "" }))));
      tickTimer();
    }

    function tickTimer() {
      const node = document.querySelector(".force-timer");
      if (!node) return;
      if (timerDue === null) {
        node.textContent = "not running (no action sent yet)";
        node.dataset.running = "no";
        return;
      }
      node.textContent = Math.max(0, (timerDue - Date.now()) / 1000).toFixed(0) + " s left";
      node.dataset.running = "yes";
    }

    function renderDiagnostics(list) {
      const box = document.getElementById("diagnostics");
      const items = (list || []).slice().reverse().map(function (d) {
        return el("li", { className: "diagnostic sev-" + d.severity, "data-diagnostic": d.id },
          el("span", { className: "sev sev-" + d.severity, text: d.severity }), " ",
          el("a", { href: "/ui/diagnostics#d-" + encodeURIComponent(d.id) }, el("code", { text: d.id })), " ",
          el("span", { text: cap(d.message) }),
          d.hint ? el("p", { className: "hint", text: cap(d.hint) }) : null);
      });
      if (!items.length) items.push(el("li", { className: "empty", text: "None." }));
      box.replaceChildren(...items);
    }

    function actionCard(action) {
      const name = action.name;
      const schema = action.schema;
      const errors = el("p", { className: "form-errors", role: "alert" });
      const raw = el("textarea", { name: "raw", rows: "4", spellcheck: "false", "aria-label": "Raw JSON data for " + cap(name, 100) });
      const rawBox = el("div", { className: "raw-box", hidden: true }, el("p", { className: "muted", text: "Sent as is, without validation (invalid data included); empty sends no data." }), raw);
      const rawToggle = el("input", { type: "checkbox", name: "raw-mode", id: "raw-" + (++fieldCounter) });
      const budget = newBudget(pageBudget);
      budgets.set(name, budget);
      const field = schema ? makeField(schema, "data", 0, budget) : null;
      const fieldsBox = el("div", { className: "fields" }, field ? field.node : el("p", { className: "muted", text: "This action takes no data." }));
      const form = el("form", { className: "action-form", "data-action": name, novalidate: true },
        fieldsBox, rawBox,
        el("div", { className: "buttons" },
          el("button", { type: "button", "data-generate": "", text: "Generate valid data" }),
          el("label", { className: "inline", for: rawToggle.id }, rawToggle, " raw JSON"),
          el("button", { type: "submit", text: "Perform " + cap(name, 60) })),
        errors);
      rawToggle.addEventListener("change", function () {
        rawBox.hidden = !rawToggle.checked;
        fieldsBox.hidden = rawToggle.checked;
        if (rawToggle.checked && field && raw.value === "") {
          try { raw.value = JSON.stringify(field.get(), null, 2); } catch (error) { /* leave empty */ }
        }
      });
      const path = gamePath(session) + "/actions/" + encodeURIComponent(name);
      form.querySelector("button[data-generate]").addEventListener("click", async function () {
        errors.textContent = "";
        const result = await api("GET", "/ui/api" + path + "/generate");
        if (result.status !== 200) {
          errors.textContent = errorText(result);
          return;
        }
        const data = result.body.data;
        if (!rawToggle.checked && field && field.set(data)) return;
        // The form cannot hold it (a shape it does not model): show it raw.
        raw.value = data === null ? "" : JSON.stringify(data, null, 2);
        if (!rawToggle.checked) rawToggle.click();
      });
      form.addEventListener("submit", async function (event) {
        event.preventDefault();
        errors.textContent = "";
        let payload;
        if (rawToggle.checked) {
          payload = raw.value.trim() === "" ? { validate: false } : { raw: raw.value, validate: false };
        } else if (field) {
          let data;
          try { data = field.get(); } catch (error) { errors.textContent = error.message; return; }
          const verdict = await api("POST", "/ui/api" + path + "/validate", { data: data });
          if (verdict.status !== 200) { errors.textContent = errorText(verdict); return; }
          if (!verdict.body.ok) { errors.textContent = "not sent: " + cap(verdict.body.reason); return; }
          payload = { data: data };
        } else {
          payload = {};
        }
        showOutcome("sending", name + "…");
        const result = await api("POST", path, payload);
        if (result.status === 200 && result.body.outcome) {
          const o = result.body.outcome;
          showOutcome(o.status, o.message === null || o.message === undefined ? "(no message)" : o.message);
        } else {
          showOutcome("error", errorText(result));
        }
      });
      const schemaBox = el("details", { className: "schema" }, el("summary", { text: "Schema" }));
      schemaBox.addEventListener("toggle", function () {
        // Rendered on first open only: a megabyte schema costs nothing until then.
        if (schemaBox.open && schemaBox.childElementCount === 1) {
          schemaBox.append(el("pre", { className: "json", text: cap(JSON.stringify(schema, null, 2), MAX_SCHEMA_TEXT) }));
        }
      });
      return el("article", { className: "card action", "data-action-card": name },
        el("h3", { text: cap(name, 200) }),
        action.description ? el("p", { className: "description", text: cap(action.description, 1000) }) : null,
        schema ? schemaBox : null, form);
    }

    function renderActions(actions) {
      const names = new Set(actions.map(function (action) { return action.name; }));
      for (const name of Array.from(rendered.keys())) {
        if (names.has(name)) continue;
        rendered.delete(name);
        release(name);
        const old = cards.get(name);
        cards.delete(name);
        if (old) old.remove();
      }
      for (const action of actions) {
        const text = JSON.stringify([action.description, action.schema]);
        if (rendered.get(action.name) === text) continue;
        release(action.name);
        const card = actionCard(action);
        // Cards by name: a selector query per action would make a game with
        // a thousand actions cost a million matches per refresh.
        const old = cards.get(action.name);
        if (old) old.replaceWith(card);
        else actionsBox.append(card);
        cards.set(action.name, card);
        rendered.set(action.name, text);
      }
      if (!actions.length && !actionsBox.querySelector(".empty")) {
        actionsBox.append(el("p", { className: "empty", text: "No action registered." }));
      } else if (actions.length) {
        const empty = actionsBox.querySelector(".empty");
        if (empty) empty.remove();
      }
    }

    async function refresh() {
      const result = await api("GET", gamePath(session));
      if (result.status !== 200) {
        setLive(result.status === 404 ? "this game is not connected" : errorText(result));
        renderForce(null);
        return;
      }
      const game = result.body;
      title = game.game;
      document.querySelector("h1.game-title").textContent = cap(game.game || session, 200);
      document.getElementById("fact-started").textContent = game.started ? "yes" : "no";
      document.getElementById("fact-frames").textContent = game.frames_in + " / " + game.frames_out;
      document.getElementById("fact-pending").textContent = (game.pending_ids || []).length ? cap(game.pending_ids.join(", "), 500) : "none";
      document.getElementById("fact-held").textContent = (game.held_by || []).length ? game.held_by.join(", ") : "–";
      const gone = document.getElementById("gone");
      if (gone) gone.remove();
      renderForce(game.force, game.pending);
      renderActions(game.actions || []);
      renderDiagnostics(game.diagnostics);
    }

    // The live frame log: the last frameLimit frames of this game.
    const frames = document.getElementById("frames");
    const filter = document.getElementById("frame-filter");
    const showIn = document.getElementById("frame-in");
    const showOut = document.getElementById("frame-out");
    const pause = document.getElementById("frame-pause");
    let paused = false;
    let missed = 0;

    function visible(row) {
      const direction = row.dataset.direction;
      if (direction === "in" && !showIn.checked) return false;
      if (direction === "out" && !showOut.checked) return false;
      const needle = filter.value.trim().toLowerCase();
      return !needle || row.textContent.toLowerCase().indexOf(needle) >= 0;
    }

    function applyFilter() {
      for (const row of frames.children) row.hidden = !visible(row);
    }

    filter.addEventListener("input", applyFilter);
    showIn.addEventListener("change", applyFilter);
    showOut.addEventListener("change", applyFilter);
    pause.addEventListener("click", function () {
      paused = !paused;
      pause.setAttribute("aria-pressed", String(paused));
      pause.textContent = paused ? "Resume" : "Pause";
      if (!paused && missed) {
        frames.append(el("li", { className: "note", "data-direction": "note", text: missed + " frames not shown while paused" }));
        missed = 0;
      }
    });
    document.getElementById("frame-clear").addEventListener("click", function () { frames.replaceChildren(); });

    function addFrame(direction, text) {
      if (paused) { missed += 1; return; }
      const time = new Date().toLocaleTimeString();
      const row = el("li", { className: "frame frame-" + direction, "data-direction": direction },
        el("span", { className: "dir", text: direction === "in" ? "⇐ in" : "⇒ out" }), " ",
        el("time", { text: time }), " ", el("code", { text: cap(text) }));
      row.hidden = !visible(row);
      frames.append(row);
      while (frames.childElementCount > frameLimit) frames.firstElementChild.remove();
    }

    const later = paced(refresh, 250);
    listen(function (kind, data) {
      if (kind === "frame.in" || kind === "frame.out") {
        if (data.session !== session) return;
        addFrame(kind === "frame.in" ? "in" : "out", data.frame);
        later();
      } else if (kind === "diagnostic") {
        if (title === null || data.game === title) later();
      }
    });
    setupGameButtons(session);
    refresh();
    setInterval(later, 3000);
    setInterval(tickTimer, 500);
  }

  function setupGameButtons(session) {
    const out = document.getElementById("op-result");
    for (const button of document.querySelectorAll("button[data-op]")) {
      button.addEventListener("click", async function () {
        const result = await api("POST", gamePath(session) + "/" + button.dataset.op, {});
        out.textContent = result.status === 200 ? button.textContent + ": sent" : errorText(result);
      });
    }
  }

  // --- capability pages ------------------------------------------------------------

  const STATUS_OPS = {
    pause: ["PUT", "paused"],
    resume: ["DELETE", "paused"],
    block: ["PUT", "blocked"],
    unblock: ["DELETE", "blocked"],
  };

  function statusPage() {
    const out = document.getElementById("status-result");
    async function change(op, name) {
      const spec = STATUS_OPS[op];
      const result = await api(spec[0], "/status/" + spec[1] + "/" + encodeURIComponent(name));
      out.textContent = result.status === 200 ? cap(name, 200) + ": " + result.body.states.join(", ") : errorText(result);
      refresh();
    }
    for (const button of document.querySelectorAll("button[data-name-op]")) {
      button.addEventListener("click", function () {
        const name = document.getElementById("status-client").value.trim();
        if (name) change(button.dataset.nameOp, name);
      });
    }
    // Rows are kept by name and only their states change: rows made anew
    // every 2 s took the keyboard's focus from their buttons, and a click
    // landing meanwhile met a row that was gone.
    const rows = new Map(); // client name -> {row, states}
    function clientRow(name) {
      const buttons = el("td", { className: "buttons" });
      for (const op of Object.keys(STATUS_OPS)) {
        buttons.append(el("button", { type: "button", "data-op": op, text: op, onclick: function () { change(op, name); } }));
      }
      const states = el("td", { className: "states" });
      return { row: el("tr", { "data-client": name }, el("th", { scope: "row", text: cap(name, 200) }), states, buttons), states: states };
    }
    async function refresh() {
      const result = await api("GET", "/status");
      if (result.status !== 200) { setLive(errorText(result)); return; }
      setLive("updated " + new Date().toLocaleTimeString());
      const report = result.body;
      const clients = Object.entries(report.clients || {}).slice(0, 1000);
      const box = document.getElementById("client-rows");
      const names = new Set();
      let previous = null;
      for (const entry of clients) {
        const name = entry[0];
        const text = (entry[1] || []).join(", ");
        names.add(name);
        if (!rows.has(name)) rows.set(name, clientRow(name));
        const known = rows.get(name);
        if (known.states.textContent !== text) known.states.textContent = text;
        const next = previous ? previous.nextSibling : box.firstChild;
        if (next !== known.row) box.insertBefore(known.row, next); // the report's order
        previous = known.row;
      }
      for (const [name, known] of Array.from(rows)) {
        if (names.has(name)) continue;
        known.row.remove();
        rows.delete(name);
      }
      document.getElementById("status-lists").replaceChildren(...Object.entries(report.lists || {}).map(function (entry) {
        const names = entry[1] || [];
        return el("div", { className: "card", "data-list": entry[0] }, el("h3", { text: entry[0] + " (" + names.length + ")" }),
          el("p", { text: cap(names.join(", ") || "–", 1000) }));
      }));
      const health = [];
      for (const entry of Object.entries(report.files || {})) {
        health.push(el("p", { "data-file": entry[0] }, el("code", { text: entry[0] }), ": ",
          el("span", { className: entry[1].error ? "error" : "ok", text: entry[1].error ? cap(entry[1].error) : "fine" })));
      }
      const redis = report.redis || {};
      health.push(el("p", { "data-redis": redis.state || "" }, "Redis: ", el("span", { text: String(redis.state) + (redis.error ? " (" + cap(redis.error, 300) + ")" : "") })));
      document.getElementById("status-health").replaceChildren(...health);
    }
    refresh();
    setInterval(refresh, 2000);
  }

  function kvRows(tbody, entries) {
    tbody.replaceChildren(...entries.map(function (entry) {
      return el("tr", { "data-key": entry[0] }, el("th", { scope: "row", text: entry[0] }),
        el("td", {}, el("code", { text: cap(JSON.stringify(entry[1]), 500) })));
    }));
  }

  function callsPage() {
    const form = document.getElementById("calls-filter");
    const count = document.getElementById("calls-count");
    const syncButton = document.getElementById("calls-sync");
    const syncResult = document.getElementById("calls-sync-result");

    function query() {
      const params = new URLSearchParams();
      const status = form.elements.status.value;
      const kind = form.elements.kind.value;
      const text = form.elements.q.value.trim();
      if (status) params.set("status", status);
      if (kind) params.set("kind", kind);
      if (text) params.set("q", text);
      params.set("limit", String(Math.min(1000, Math.max(1, Number(form.elements.limit.value) || 100))));
      return params;
    }

    function cell(value) {
      return el("td", { text: value === null || value === undefined ? "–" : cap(String(value), 200) });
    }

    async function refreshRegistry() {
      const params = query();
      const result = await api("GET", "/calls/registry?" + params.toString());
      if (result.status !== 200) { count.textContent = errorText(result); return; }
      const calls = result.body.calls || [];
      document.getElementById("call-rows").replaceChildren(...calls.map(function (call) {
        return el("tr", { "data-call": call.id, "data-status": call.status, "data-kind": call.kind || "video" },
          el("th", { scope: "row" }, el("code", { text: cap(call.id, 100) })), cell(call.kind || "video"),
          cell(call.caller), cell(call.callee), cell(call.room), cell(call.status), cell(call.created_at),
          cell(call.duration === null ? null : call.duration + " s"), cell(call.end_reason));
      }));
      let text = calls.length + (calls.length === 1 ? " call" : " calls") + " shown";
      if (params.has("q")) text += " of " + result.body.matched + " matching (" + result.body.scanned + " searched)";
      count.textContent = text;
    }

    async function refreshJob() {
      const job = await api("GET", "/calls/job");
      const health = await api("GET", "/health");
      if (job.status !== 200) { setLive(errorText(job)); return; }
      setLive("updated " + new Date().toLocaleTimeString());
      const service = job.body.background_service || {};
      const first = (service.jobs || [])[0] || {};
      const section = ((health.body || {}).capabilities || {}).calls || {};
      const sync = section.sync || {};
      document.getElementById("job-twilio").textContent = section.twilio || "–";
      document.getElementById("job-running").textContent = service.running ? "running" : "not running";
      document.getElementById("job-next").textContent = first.next_run || "–";
      document.getElementById("job-trigger").textContent = first.trigger || "–";
      document.getElementById("job-last").textContent = sync.last_run || "never";
      document.getElementById("job-error").textContent = sync.last_error ? cap(sync.last_error, 500) : "none";
      syncButton.disabled = section.twilio === "not configured";
      syncButton.title = syncButton.disabled ? "Twilio is not configured" : "";
    }

    async function refreshCounts() {
      const registry = await api("GET", "/calls/stats");
      if (registry.status === 200) kvRows(document.getElementById("calls-registry-rows"), Object.entries(registry.body.stats || {}));
      const stats = await api("GET", "/stats");
      const section = stats.status === 200 ? ((stats.body.capabilities || {}).calls) : null;
      if (section) kvRows(document.querySelector("#calls-stats tbody"), Object.entries(section));
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      refreshRegistry();
    });
    form.elements.status.addEventListener("change", refreshRegistry);
    form.elements.kind.addEventListener("change", refreshRegistry);
    syncButton.addEventListener("click", async function () {
      syncButton.disabled = true;
      syncResult.textContent = "syncing…";
      const result = await api("POST", "/calls/sync", {});
      syncResult.textContent = result.status === 200
        ? "synced " + result.body.synced + ", ended " + result.body.ended + " at " + result.body.timestamp
        : errorText(result);
      syncButton.disabled = false;
      refreshJob();
      refreshRegistry();
      refreshCounts();
    });
    refreshJob();
    refreshRegistry();
    refreshCounts();
    setInterval(refreshJob, 2000);
    setInterval(function () {
      // A text search reads the whole registry: it runs when asked only.
      if (!query().has("q")) refreshRegistry();
    }, 5000);
    setInterval(refreshCounts, 10000);
  }

  function realtimePage() {
    async function refresh() {
      const result = await api("GET", "/realtime/stats");
      if (result.status !== 200) { setLive(errorText(result)); return; }
      setLive("updated " + new Date().toLocaleTimeString());
      const stats = result.body;
      const connections = (stats.connections || []).slice(0, 500);
      kvRows(document.getElementById("realtime-rows"), Object.entries(stats).filter(function (entry) {
        return entry[0] !== "connections";
      }));
      const keys = connections.length ? Object.keys(connections[0]) : [];
      document.getElementById("realtime-head").replaceChildren(el("tr", {}, ...keys.map(function (key) { return el("th", { scope: "col", text: key }); })));
      document.getElementById("realtime-conn-rows").replaceChildren(...connections.map(function (connection) {
        return el("tr", {}, ...keys.map(function (key) {
          const value = connection[key];
          return el("td", { text: cap(typeof value === "string" ? value : JSON.stringify(value), 300) });
        }));
      }));
    }
    refresh();
    setInterval(refresh, 2000);
  }

  // Phone calls: the voice capability's live calls, polled (paced: never two
  // requests at once, slower when the server is). Rows and cards are kept by
  // call SID and only their texts change, so an "End call" button keeps the
  // keyboard's focus between refreshes.
  const VOICE_COUNTERS = {
    calls: "calls answered",
    busy: "busy (no Realtime connection free)",
    rejected: "rejected (blocked callers)",
    forbidden: "refused unsigned",
    replayed: "replayed webhooks",
  };

  function voicePage() {
    const rowsBox = document.getElementById("voice-rows");
    const cardsBox = document.getElementById("voice-transcripts");
    const count = document.getElementById("voice-count");
    const out = document.getElementById("voice-result");
    const calls = new Map(); // call SID -> {row, cells, button, card, lines, said}
    const COLUMNS = ["from", "to", "state", "seconds", "barge_ins", "tool_calls", "dtmf", "heard"];

    function setText(node, text) {
      if (node.textContent !== text) node.textContent = text;
    }

    async function end(sid, button) {
      button.disabled = true;
      button.textContent = "Ending…";
      const result = await api("POST", "/voice/calls/" + encodeURIComponent(sid) + "/end", {});
      out.textContent = result.status === 200 ? "ended " + cap(sid, 40) + " (" + result.body.reason + ")" : errorText(result);
      if (result.status !== 200) {
        button.disabled = false;
        button.textContent = "End call";
      }
      poll();
    }

    function callRow(sid) {
      const cells = {};
      // The button comes second: on a phone the table scrolls sideways.
      const button = el("button", { type: "button", className: "small", "data-end": sid, text: "End call" });
      button.addEventListener("click", function () { end(sid, button); });
      const row = el("tr", { "data-call": sid }, el("th", { scope: "row" }, el("code", { text: cap(sid, 40) })), el("td", {}, button));
      for (const name of COLUMNS) {
        cells[name] = el("td", { "data-field": name });
        row.append(cells[name]);
      }
      const lines = el("ol", { className: "transcript" });
      const from = el("span", { className: "from" });
      const card = el("div", { className: "card", "data-call": sid }, el("h3", {}, el("code", { text: cap(sid, 40) }), " from ", from), lines);
      return { row: row, cells: cells, button: button, card: card, from: from, lines: lines, said: null };
    }

    function show(known, call) {
      const bridged = call.state === "bridged";
      const heard = bridged ? (Number(call.heard_ms || 0) / 1000).toFixed(1) + " s" + (call.playing ? ", speaking" : "") : "–";
      const values = {
        from: call.from || "?",
        to: call.to || "?",
        state: call.state,
        seconds: Number(call.seconds).toFixed(0),
        barge_ins: bridged ? String(call.barge_ins) : "–",
        tool_calls: bridged ? String(call.tool_calls) : "–",
        dtmf: bridged ? String(call.dtmf) : "–",
        heard: heard,
      };
      for (const name of COLUMNS) setText(known.cells[name], cap(values[name], 100));
      known.row.dataset.state = call.state;
      // Only a bridged call can be ended; one being ended stays disabled.
      if (!bridged) known.button.disabled = true;
      else if (known.button.textContent === "End call") known.button.disabled = false;
      const said = call.transcript || [];
      const text = JSON.stringify(said);
      if (known.said !== text) {
        known.said = text;
        known.lines.replaceChildren(...said.map(function (line) {
          const who = line.who === "neuro" ? "Neuro" : "Caller";
          return el("li", { "data-who": line.who === "neuro" ? "neuro" : "caller" },
            el("span", { className: "who", text: who + ": " }), el("span", { className: "said", text: cap(line.text, 2000) }));
        }));
        if (!said.length) known.lines.replaceChildren(el("li", { className: "empty", text: "nothing said yet" }));
      }
      setText(known.from, cap(call.from || "?", 100));
    }

    function showCounters(counters) {
      const names = Object.keys(VOICE_COUNTERS).concat(Object.keys(counters).filter(function (key) {
        return !(key in VOICE_COUNTERS);
      }).sort());
      document.getElementById("voice-counter-rows").replaceChildren(...names.slice(0, 200).map(function (key) {
        const label = VOICE_COUNTERS[key] || (key.startsWith("ended_") ? "ended: " + key.slice(6) : key);
        return el("tr", { "data-key": key }, el("th", { scope: "row", text: cap(label, 200) }),
          el("td", { text: String(counters[key] === undefined ? 0 : counters[key]) }));
      }));
    }

    async function refresh() {
      const result = await api("GET", "/voice/calls");
      if (result.status !== 200) { setLive(errorText(result)); return; }
      setLive("updated " + new Date().toLocaleTimeString());
      const live = (result.body.calls || []).slice(0, 500);
      const seen = new Set();
      let previous = null;
      let previousCard = null;
      for (const call of live) {
        const sid = String(call.call_sid);
        seen.add(sid);
        if (!calls.has(sid)) calls.set(sid, callRow(sid));
        const known = calls.get(sid);
        show(known, call);
        const next = previous ? previous.nextSibling : rowsBox.firstChild;
        if (next !== known.row) rowsBox.insertBefore(known.row, next);
        previous = known.row;
        if (call.state === "bridged") {
          const nextCard = previousCard ? previousCard.nextSibling : cardsBox.firstChild;
          if (nextCard !== known.card) cardsBox.insertBefore(known.card, nextCard);
          previousCard = known.card;
        }
      }
      for (const [sid, known] of Array.from(calls)) {
        if (seen.has(sid)) continue;
        known.row.remove();
        known.card.remove();
        calls.delete(sid);
      }
      setText(count, live.length === 0 ? "No call in progress." : live.length + (live.length === 1 ? " call" : " calls") + " in progress");
      showCounters(result.body.counters || {});
    }

    // Each refresh asks for the next one when it ends: one at a time.
    const poll = paced(async function () {
      try {
        await refresh();
      } finally {
        poll();
      }
    }, 2000);
    refresh().finally(poll);
  }

  const pages = { games: body.dataset.session ? gamePage : gamesPage, status: statusPage, calls: callsPage, realtime: realtimePage, voice: voicePage };
  const start = pages[page];
  if (start) start();
})();
