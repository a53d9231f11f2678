// portbook's dashboard: polls /api/sockets and /api/names, renders the live table.
// Every text that comes from the machine (process names, command lines) is set
// with textContent, never parsed as HTML: other users choose those strings.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  // Seconds between polls; ?refresh=0.5 polls faster (tests use it).
  const REFRESH = Math.max(0.2, Number(params.get("refresh")) || 2) * 1000;
  const MAX_EVENTS = 500;
  const WEB = /\bhttps?\b|\bwww\b|web ui|development server/i;
  const SECURE = /https|\btls\b|\bssl\b/i;

  const state = {
    sockets: [],
    names: new Map(), // "port/protocol" -> name status
    previous: null, // Map key -> socket, as last shown
    events: [],
    sortKey: "port",
    sortUp: true,
    book: new Map(), // "port/protocol" -> book entries, or a pending Promise
    updates: 0,
  };

  const $ = (id) => document.getElementById(id);
  const tbody = document.querySelector("#sockets tbody");
  const filter = $("filter");

  function endpoint(address, port) {
    return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
  }

  function socketKey(s) {
    return `${s.protocol} ${endpoint(s.local_address, s.local_port)} ${s.inode}`;
  }

  function programText(s) {
    if (s.processes.length) return s.processes.map((p) => `${p.name || "?"}[${p.pid}]`).join(", ");
    return s.owner_note === "not visible without root" ? "?" : "-";
  }

  function commandText(s) {
    const p = s.processes.find((q) => q.cmdline && q.cmdline.length);
    return p ? p.cmdline.join(" ") : "";
  }

  // The link a listener gets when the book says its port speaks HTTP(S).
  function linkFor(s, entries, pageHost) {
    if (s.protocol !== "tcp" || s.state !== "LISTEN") return null;
    const texts = [s.service || "", ...(entries || []).map(
      (e) => [e.name, e.description, e.software].filter(Boolean).join(" "))];
    const web = texts.find((t) => WEB.test(t));
    if (!web) return null;
    const scheme = SECURE.test(web) ? "https" : "http";
    let host = s.local_address;
    if (s.exposure === "all") {
      // Reachable wherever the page itself was reached (location.hostname has [] for IPv6).
      host = (pageHost || "").replace(/^\[|\]$/g, "") || (s.family === 6 ? "::1" : "127.0.0.1");
    }
    return `${scheme}://${endpoint(host, s.local_port)}/`;
  }

  function rowClasses(s, name) {
    const classes = [`exposure-${s.exposure}`];
    if (name) classes.push("named");
    return classes;
  }

  function row(s) {
    const named = state.names.get(`${s.local_port}/${s.protocol}`);
    return {
      socket: s,
      protocol: `${s.protocol}${s.family}`,
      address: s.local_address,
      port: s.local_port,
      service: s.service || "",
      name: named ? named.name : "",
      program: programText(s),
      user: s.user || (s.uid >= 0 ? String(s.uid) : ""),
      exposure: s.exposure,
      container: s.container ? s.container.name || s.container.id.slice(0, 12) : "",
      unit: s.unit ? s.unit.name : "",
      command: commandText(s),
    };
  }

  function compare(a, b) {
    const x = a[state.sortKey];
    const y = b[state.sortKey];
    const order = typeof x === "number" && typeof y === "number"
      ? x - y : String(x).localeCompare(String(y));
    return (state.sortUp ? order : -order) || a.port - b.port;
  }

  function matches(r, words) {
    if (!words.length) return true;
    const text = [r.protocol, endpoint(r.address, r.port), r.service, r.name, r.program,
      r.user, r.exposure, r.container, r.unit, r.command].join(" ").toLowerCase();
    return words.every((w) => text.includes(w));
  }

  function cell(tr, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    tr.append(td);
    return td;
  }

  function render() {
    const words = filter.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const optional = { container: false, unit: false };
    const rows = state.sockets.map(row);
    for (const r of rows) {
      optional.container ||= Boolean(r.container);
      optional.unit ||= Boolean(r.unit);
    }
    const shown = rows.filter((r) => matches(r, words)).sort(compare);
    const body = document.createDocumentFragment();
    for (const r of shown) body.append(renderRow(r, optional));
    tbody.replaceChildren(body);
    for (const th of document.querySelectorAll("#sockets th")) {
      const key = th.dataset.key;
      if (key in optional) th.hidden = !optional[key];
      if (key === state.sortKey) th.setAttribute("aria-sort", state.sortUp ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
    $("count").textContent = `${shown.length} of ${rows.length} sockets`;
  }

  function renderRow(r, optional) {
    const s = r.socket;
    const tr = document.createElement("tr");
    tr.className = rowClasses(s, r.name).join(" ");
    tr.dataset.port = String(s.local_port);
    tr.dataset.protocol = s.protocol;
    tr.dataset.key = socketKey(s);
    cell(tr, r.protocol);
    cell(tr, r.address);
    const portCell = cell(tr, "", "port");
    const entries = state.book.get(`${s.local_port}/${s.protocol}`);
    const href = linkFor(s, Array.isArray(entries) ? entries : [], location.hostname);
    const label = href ? document.createElement("a") : document.createElement("button");
    label.textContent = String(s.local_port);
    if (href) {
      label.href = href;
      label.rel = "noreferrer";
    } else {
      label.type = "button";
    }
    label.title = bookSummary(entries) || "click for what the book says about this port";
    label.addEventListener("click", (ev) => {
      if (!href || ev.altKey) {
        ev.preventDefault();
        showDetails(s.local_port, s.protocol);
      }
    });
    label.addEventListener("mouseenter", () => ensureBook(s.local_port, s.protocol));
    portCell.append(label);
    cell(tr, r.service);
    cell(tr, r.name, r.name ? "name" : "");
    cell(tr, r.program).title = s.owner_note || "";
    cell(tr, r.user);
    cell(tr, r.exposure, "exposure");
    if (optional.container) cell(tr, r.container);
    if (optional.unit) cell(tr, r.unit);
    const cmd = cell(tr, r.command, "command");
    cmd.title = r.command;
    return tr;
  }

  function bookSummary(entries) {
    if (!Array.isArray(entries) || !entries.length) return "";
    return entries.slice(0, 4).map((e) => `${e.name || "(unassigned)"}: ${e.description}`).join("\n");
  }

  // The book's entries for a port, fetched once per page.
  function ensureBook(port, protocol) {
    const key = `${port}/${protocol}`;
    const known = state.book.get(key);
    if (known) return Promise.resolve(known);
    const pending = fetch(`/api/lookup?port=${port}&protocol=${protocol}`, { cache: "no-store" })
      .then((r) => (r.ok ? r.json() : []))
      .catch(() => [])
      .then((entries) => {
        state.book.set(key, entries);
        return entries;
      });
    state.book.set(key, pending);
    return pending;
  }

  async function showDetails(port, protocol) {
    const entries = await ensureBook(port, protocol);
    $("details").hidden = false;
    $("details-title").textContent = `${protocol}/${port} in the book`;
    const list = $("details-entries");
    list.replaceChildren();
    if (!Array.isArray(entries) || !entries.length) {
      const li = document.createElement("li");
      li.textContent = "no entry";
      list.append(li);
    }
    for (const e of entries || []) {
      const li = document.createElement("li");
      const where = e.source === "iana" ? "IANA" : e.source === "etc-services" ? "/etc/services" : "unofficial";
      const range = e.port !== null && e.port_end !== e.port ? ` (${e.port}-${e.port_end})` : "";
      li.textContent = `${where}: ${e.name || "(" + e.status + ")"}${range}: ${e.description}` +
        (e.software ? ` [${e.software}]` : "");
      list.append(li);
    }
  }

  // Look up the book for listeners not seen before, a few at a time, then redraw
  // once so that their links and titles appear.
  async function learnPorts() {
    const wanted = state.sockets.filter((s) => s.protocol === "tcp" && s.state === "LISTEN" &&
      !state.book.has(`${s.local_port}/${s.protocol}`));
    const ports = [...new Set(wanted.map((s) => s.local_port))].slice(0, 64);
    for (let i = 0; i < ports.length; i += 4) {
      await Promise.all(ports.slice(i, i + 4).map((p) => ensureBook(p, "tcp")));
    }
    if (ports.length) render();
  }

  function describe(s) {
    return `${s.protocol} ${endpoint(s.local_address, s.local_port)} ${s.state} ${programText(s)}`;
  }

  function noteChanges(sockets) {
    const now = new Map(sockets.map((s) => [socketKey(s), s]));
    if (state.previous !== null) {
      const time = new Date().toLocaleTimeString();
      for (const [key, s] of state.previous) {
        if (!now.has(key)) state.events.push({ kind: "closed", time, s });
      }
      for (const [key, s] of now) {
        if (!state.previous.has(key)) state.events.push({ kind: "opened", time, s });
      }
      state.events.splice(0, Math.max(0, state.events.length - MAX_EVENTS));
    }
    state.previous = now;
    const list = $("events");
    if (!state.events.length) return;
    const items = state.events.slice().reverse().map((e) => {
      const li = document.createElement("li");
      li.className = e.kind;
      li.dataset.port = String(e.s.local_port);
      li.textContent = `${e.time} ${e.kind === "opened" ? "+" : "-"} ${describe(e.s)}`;
      return li;
    });
    list.replaceChildren(...items);
  }

  function renderNames(statuses) {
    const body = document.querySelector("#names tbody");
    body.replaceChildren();
    for (const n of statuses) {
      const tr = document.createElement("tr");
      tr.className = n.listening ? "listening" : "silent";
      cell(tr, n.name);
      cell(tr, String(n.port));
      cell(tr, n.protocol);
      cell(tr, n.listening ? "yes" : "no");
      cell(tr, n.processes.map((p) => `${p.name || "?"}[${p.pid}]`).join(", "));
      body.append(tr);
    }
    if (!statuses.length) {
      const tr = document.createElement("tr");
      const td = cell(tr, "no names yet: portbook assign NAME gives one a port");
      td.colSpan = 5;
      body.append(tr);
    }
  }

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) throw new Error(`${url}: ${response.status}`);
    return response.json();
  }

  async function refresh() {
    try {
      const [sockets, names] = await Promise.all([getJSON("/api/sockets"), getJSON("/api/names")]);
      state.names = new Map(names.map((n) => [`${n.port}/${n.protocol}`, n]));
      state.sockets = sockets;
      noteChanges(sockets);
      renderNames(names);
      render();
      state.updates += 1;
      document.body.dataset.updates = String(state.updates);
      document.body.classList.remove("offline");
      $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
      learnPorts();
    } catch (err) {
      document.body.classList.add("offline");
      $("updated").textContent = "offline: retrying";
    } finally {
      setTimeout(refresh, REFRESH);
    }
  }

  for (const th of document.querySelectorAll("#sockets th")) {
    th.tabIndex = 0;
    const sortBy = () => {
      state.sortUp = state.sortKey === th.dataset.key ? !state.sortUp : true;
      state.sortKey = th.dataset.key;
      render();
    };
    th.addEventListener("click", sortBy);
    th.addEventListener("keydown", (ev) => { if (ev.key === "Enter") sortBy(); });
  }
  filter.addEventListener("input", render);

  // For tests and the curious: the pure parts, callable from the console.
  window.portbook = { linkFor, rowClasses, socketKey };
  refresh();
})();
