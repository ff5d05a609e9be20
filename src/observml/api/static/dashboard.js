/* observml dashboard: polls the REST API and draws with plotly.js (served by the API). */
"use strict";

(function () {
  const STATUS_EVERY_MS = 1000;
  const LIST_EVERY_TICKS = 2;
  const PAGE_SIZE = 50;
  const FILTER_DELAY_MS = 250;
  const HEALTH_EVERY_TICKS = 5;
  const VALUE_KEYS = ["score", "forecast", "prediction", "probability", "value"];
  const SHADOW_FIGURE_EVERY_MS = 3000;
  const ALERT_KINDS = {
    drift: "the scores drifted",
    threshold: "a metric crossed its threshold",
    signal: "the retrain policy fired",
    retrain_failed: "a retrain failed",
  };
  const PLOT_CONFIG = { responsive: true, displaylogo: false };

  const state = {
    selected: decodeURIComponent(window.location.hash.slice(1)) || null,
    tick: 0,
    polling: false,
    plotsKey: null,
    versionsKey: null,
    report: null,
    lastPredictionsKey: null,
    status: null,
    watch: null,
    reportedJob: undefined,
    signingIn: false,
    alertKey: null,
    shadowKey: null,
    shadowFigure: { key: null, at: 0 },
    deciding: false,
    // the experiment list: one page of PAGE_SIZE, filtered by name and state
    list: { offset: 0, name: "", state: "", states: null, asked: 0 },
  };

  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || "HTTP " + status);
      this.status = status;
      this.body = body;
    }
  }

  // -- HTTP ------------------------------------------------------------------------------
  async function request(path, options) {
    const opts = Object.assign({ method: "GET" }, options || {});
    const headers = {};
    if (opts.json !== undefined) {
      headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.json);
    }
    // the session cookie goes along (same origin); the server set it at sign-in
    const response = await fetch(path, {
      method: opts.method,
      headers: headers,
      body: opts.body,
      credentials: "same-origin",
    });
    if (response.status === 401) {
      signInAgain();
      throw new ApiError(401, await safeJson(response));
    }
    return response;
  }

  async function safeJson(response) {
    try {
      return await response.json();
    } catch (err) {
      return null;
    }
  }

  async function api(path, options) {
    const response = await request(path, options);
    const body = await safeJson(response);
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  function experimentPath(name, suffix) {
    return "experiments/" + encodeURIComponent(name) + (suffix || "");
  }

  // -- session ---------------------------------------------------------------------------
  // Signed out, or the server's token changed: reload, so the server shows its sign-in page.
  function signInAgain() {
    if (state.signingIn) return;
    state.signingIn = true;
    window.location.reload();
  }

  function setupSession() {
    const button = $("sign-out");
    button.hidden = document.documentElement.dataset.auth !== "on";
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await fetch("session", { method: "DELETE", credentials: "same-origin" });
      } finally {
        window.location.reload();
      }
    });
  }

  // -- formatting ------------------------------------------------------------------------
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => {
      if (value === undefined || value === null || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    });
    (children || []).forEach((child) => {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : document.createTextNode(String(child)));
      }
    });
    return node;
  }

  function fmt(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "number") {
      if (!isFinite(value)) return "–";
      if (Number.isInteger(value)) return value.toLocaleString();
      return Math.abs(value) >= 1000 ? value.toFixed(0) : value.toPrecision(3);
    }
    return String(value);
  }

  function time(epochSeconds) {
    return epochSeconds ? new Date(epochSeconds * 1000).toLocaleTimeString() : "–";
  }

  function dateTime(epochSeconds) {
    return epochSeconds ? new Date(epochSeconds * 1000).toLocaleString() : "–";
  }

  function percent(share) {
    return typeof share === "number" && isFinite(share) ? (100 * share).toFixed(1) + " %" : "–";
  }

  // A datetime-local input's value (local time, seconds) for an epoch time.
  function localInput(epochSeconds) {
    const d = new Date(epochSeconds * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return (
      d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) +
      "T" + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds())
    );
  }

  function badge(text, kind) {
    return el("span", { class: "badge " + (kind || text), text: text });
  }

  function metricList(metrics) {
    const entries = Object.entries(metrics || {});
    if (!entries.length) return el("span", { class: "muted", text: "–" });
    return el(
      "span",
      {},
      entries.slice(0, 4).map(([key, value]) => el("span", { class: "metric", text: key + " " + fmt(value) }))
    );
  }

  function showMessage(text, isError) {
    const box = $("message");
    box.hidden = !text;
    box.textContent = text || "";
    box.className = "message" + (isError ? " error" : "");
  }

  // -- health ----------------------------------------------------------------------------
  async function refreshHealth() {
    const response = await request("health");
    const report = (await safeJson(response)) || {};
    const box = $("health");
    box.replaceChildren(
      ...Object.entries(report).map(([type, entry]) => {
        const details = entry.details || {};
        const title = Object.entries(details)
          .map(([k, v]) => k + ": " + (typeof v === "object" ? JSON.stringify(v) : v))
          .join("\n");
        return el("span", { class: "pill", title: title, "data-plugin": type }, [
          el("span", { class: "dot " + (entry.healthy ? "ok" : "bad") }),
          type + (entry.healthy ? "" : " unhealthy") + " · " + fmt(details.latency_ms) + " ms",
        ]);
      })
    );
  }

  // -- experiments list ------------------------------------------------------------------
  // One page of the list (GET /experiments?offset&limit&name&state, its X-Total-Count) and the
  // counts of all experiments (GET /experiments/summary): never every experiment's status.
  function listQuery() {
    const query = new URLSearchParams({ offset: String(state.list.offset), limit: String(PAGE_SIZE) });
    if (state.list.name) query.set("name", state.list.name);
    if (state.list.state) query.set("state", state.list.state);
    return query.toString();
  }

  async function refreshList() {
    const asked = ++state.list.asked;
    const query = listQuery();
    const [response, summary] = await Promise.all([request("experiments?" + query), api("experiments/summary")]);
    const experiments = await safeJson(response);
    if (!response.ok) throw new ApiError(response.status, experiments);
    if (asked !== state.list.asked) return;  // the filter or page changed meanwhile
    const total = Number(response.headers.get("X-Total-Count") || experiments.length);
    if (!experiments.length && total && state.list.offset >= total) {  // the page emptied
      state.list.offset = Math.floor((total - 1) / PAGE_SIZE) * PAGE_SIZE;
      return refreshList();
    }
    renderSummary(summary);
    renderStates(summary.by_state || {});
    renderPager(total, experiments.length);
    const body = $("experiments").tBodies[0];
    if (!experiments.length) {
      const text = state.list.name || state.list.state
        ? "No experiment matches the filter."
        : "No experiments yet. POST /experiments creates one.";
      body.replaceChildren(el("tr", {}, [el("td", { colspan: 8, class: "muted", text: text })]));
      return;
    }
    body.replaceChildren(
      ...experiments.map((exp) =>
        el(
          "tr",
          {
            "data-name": exp.name,
            class: exp.name === state.selected ? "selected" : "",
            onclick: () => select(exp.name),
          },
          [
            el("td", {}, [el("strong", { text: exp.name })]),
            el("td", { text: exp.type + " · " + (exp.model || "–") }),
            el("td", {}, [badge(exp.state), exp.alert ? badge("alert") : null]),
            el("td", {
              text:
                (exp.champion_version ? "v" + exp.champion_version : "–") +
                (exp.challenger_version ? " · v" + exp.challenger_version + " in shadow" : ""),
            }),
            el("td", {}, [exp.streaming ? badge("on") : el("span", { class: "muted", text: "off" })]),
            el("td", {}, [metricList(Object.keys(exp.metrics || {}).length ? exp.metrics : exp.train_metrics)]),
            el("td", { class: "num", text: fmt((exp.counters || {}).predicted_rows) }),
            el("td", { class: "num", text: fmt((exp.counters || {}).dead_letters) }),
          ]
        )
      )
    );
    if (!state.selected && experiments.length) select(experiments[0].name);
  }

  function plural(n, noun) {
    return fmt(n) + " " + noun + (n === 1 ? "" : "s");
  }

  // "500 experiments: 480 ready, 12 running, 8 queued · 430 streaming · 3 alerts open · 2 in shadow"
  function renderSummary(summary) {
    const states = Object.entries(summary.by_state || {}).map(([name, n]) => fmt(n) + " " + name);
    const alerts = summary.open_alerts || 0;
    const shadows = summary.in_shadow || 0;
    $("experiments-summary").replaceChildren(
      plural(summary.total || 0, "experiment") + (states.length ? ": " + states.join(", ") : ""),
      " · " + fmt(summary.streaming || 0) + " streaming · ",
      el("span", { class: alerts ? "alerts" : "", text: plural(alerts, "alert") + " open" }),
      " · ",
      el("span", { class: shadows ? "shadows" : "", text: fmt(shadows) + " in shadow" })
    );
    const types = Object.entries(summary.by_type || {}).map(([name, n]) => fmt(n) + " " + name);
    $("experiments-summary").title = types.join(", ");
  }

  // The state filter offers the states experiments are in now (and the chosen one).
  function renderStates(byState) {
    const select = $("experiments-state");
    const names = Object.keys(byState).sort();
    if (state.list.state && !names.includes(state.list.state)) names.push(state.list.state);
    const key = names.join("|");
    if (state.list.states !== key) {  // rebuilt only when the states change: an open menu stays
      state.list.states = key;
      select.replaceChildren(
        el("option", { value: "", text: "every state" }),
        ...names.map((name) => el("option", { value: name, "data-state": name }))
      );
      select.value = state.list.state;
    }
    select.querySelectorAll("option[data-state]").forEach((option) => {
      option.textContent = option.value + " (" + fmt(byState[option.value] || 0) + ")";
    });
  }

  function renderPager(total, shown) {
    const first = state.list.offset + 1;
    const last = state.list.offset + shown;
    const paged = state.list.offset > 0 || total > shown;
    const filtered = state.list.name || state.list.state;
    $("experiments-range").textContent = !shown
      ? ""
      : paged
        ? fmt(first) + "–" + fmt(last) + " of " + fmt(total) + (filtered ? " matching" : "")
        : filtered ? fmt(total) + " matching" : "";
    $("experiments-prev").hidden = $("experiments-next").hidden = !paged;
    $("experiments-prev").disabled = state.list.offset === 0;
    $("experiments-next").disabled = last >= total;
  }

  function setupList() {
    let timer = null;
    const again = () => {
      state.list.offset = 0;
      refreshList().catch(report);
    };
    $("experiments-filter").addEventListener("input", (event) => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        state.list.name = event.target.value.trim();
        again();
      }, FILTER_DELAY_MS);
    });
    $("experiments-state").addEventListener("change", (event) => {
      state.list.state = event.target.value;
      again();
    });
    $("experiments-prev").addEventListener("click", () => {
      state.list.offset = Math.max(0, state.list.offset - PAGE_SIZE);
      refreshList().catch(report);
    });
    $("experiments-next").addEventListener("click", () => {
      state.list.offset += PAGE_SIZE;
      refreshList().catch(report);
    });
  }

  function select(name) {
    if (state.selected === name) return;
    state.selected = name;
    state.plotsKey = state.versionsKey = state.lastPredictionsKey = null;
    state.report = null;
    state.reportedJob = undefined;
    history.replaceState(null, "", "#" + encodeURIComponent(name));
    document.querySelectorAll("#experiments tbody tr").forEach((row) => {
      row.classList.toggle("selected", row.dataset.name === name);
    });
    showMessage("");
    clearReport();
    poll(true);
  }

  // -- one experiment --------------------------------------------------------------------
  async function refreshDetail() {
    const name = state.selected;
    if (!name) return;
    let status;
    try {
      status = await api(experimentPath(name));
    } catch (err) {
      if (err.status === 404) {
        state.selected = null;
        $("detail").hidden = true;
        return;
      }
      throw err;
    }
    if (name !== state.selected) return;
    state.status = status;
    $("detail").hidden = false;
    $("detail-name").textContent = status.name;
    const stateBadge = $("detail-state");
    stateBadge.textContent = status.state;
    stateBadge.className = "badge " + status.state;
    renderActions(status);
    renderAlert(status);
    renderShadow(status);
    renderCards(status);
    renderPredictions(status);
    renderDecisions(status);
    renderDeadLetters(status);
    const key = status.name + "@" + status.champion_version;
    if (status.trained && state.plotsKey !== key) {
      state.plotsKey = key;
      refreshPlots(status.name).catch(report);
    }
    const versionsKey = key + "/" + (status.decisions || []).length;
    if (state.versionsKey !== versionsKey) {
      state.versionsKey = versionsKey;
      refreshVersions(status.name).catch(report);
    }
  }

  function renderActions(status) {
    const busy = status.job && (status.job.state === "running" || status.job.state === "queued");
    const toggle = $("stream-toggle");
    toggle.textContent = status.streaming ? "Stop streaming" : "Start streaming";
    toggle.className = status.streaming ? "secondary" : "";
    const retrain = $("retrain");
    retrain.disabled = !status.trained || busy || status.retrain_in_flight || !!status.shadow;
    retrain.title = status.shadow
      ? "Promote or reject the challenger in shadow first"
      : status.promotion === "auto"
        ? "Train a challenger on the recent rows; the gate promotes or rejects it"
        : "Train a challenger on the recent rows; it waits in shadow for your decision";
    $("rollback").disabled = !status.previous_version || busy;
  }

  function renderCards(status) {
    const counters = status.counters || {};
    const job = status.job;
    const latency = counters.batches ? (1000 * (counters.batch_seconds || 0)) / counters.batches : null;
    const cards = [
      ["champion", status.champion_version ? "v" + status.champion_version : "none"],
      ["previous", status.previous_version ? "v" + status.previous_version : "–"],
      ["job", job ? job.kind + " " + job.state + (job.state === "running" ? " " + Math.round(100 * job.progress) + "%" : "") : "–"],
      ["predicted rows", fmt(counters.predicted_rows)],
      ["dead letters", fmt(counters.dead_letters)],
      ["batches", fmt(counters.batches)],
      ["mean batch latency", latency === null ? "–" : fmt(latency) + " ms"],
      ["retrains", fmt(counters.retrains)],
      ["alerts raised", fmt(counters.alerts)],
    ];
    if (status.drift) {
      const drift = status.drift;
      cards.push(["score drift (KS)", fmt(drift.statistic) + (drift.drifted ? " drifted" : " steady")]);
    }
    Object.entries(status.metrics || {}).forEach(([key, value]) => cards.push([key, fmt(value)]));
    if (!Object.keys(status.metrics || {}).length) {
      Object.entries(status.train_metrics || {}).slice(0, 4).forEach(([key, value]) => cards.push(["train " + key, fmt(value)]));
    }
    $("cards").replaceChildren(
      ...cards.map(([label, value]) =>
        el("div", { class: "card" }, [el("div", { class: "label", text: label }), el("div", { class: "value", text: value })])
      )
    );
    reportJob(job);
  }

  const FINAL = ["succeeded", "failed", "stopped"];

  function reportJob(job) {
    if (!job || !FINAL.includes(job.state) || state.reportedJob === job.job_id) return;
    const watched = state.watch && state.watch.id === job.job_id;
    if (watched) {
      let text = state.watch.label + ": job " + job.job_id + " " + job.state;
      if (job.state === "succeeded" && job.result && job.result.shadow) {
        text += ", challenger v" + job.version + " is in shadow: compare it below, then promote or reject it";
      } else if (job.state === "succeeded" && job.result && "promoted" in job.result) {
        text += job.result.promoted
          ? ", v" + job.version + " promoted to champion"
          : ", v" + job.version + " not promoted: " + (job.result.reason || "the gate failed it");
      } else if (job.state === "succeeded" && job.version) {
        text += ", serving v" + job.version;
      }
      if (job.error) text += ": " + job.error;
      showMessage(text, job.state === "failed");
      state.watch = null;
    } else if (job.state === "failed" && state.reportedJob !== undefined) {
      showMessage(job.kind + " job " + job.job_id + " failed: " + (job.error || "see the server log"), true);
    }
    state.reportedJob = job.job_id;
  }

  function valueKey(rows) {
    const first = rows[0] || {};
    const numeric = (key) => typeof first[key] === "number";
    return VALUE_KEYS.find(numeric) || Object.keys(first).find((key) => key !== "at" && numeric(key)) || null;
  }

  function renderPredictions(status) {
    const rows = status.last_predictions || [];
    const chart = $("predictions-chart");
    const empty = $("predictions-empty");
    const last = rows.length ? rows[rows.length - 1].at : 0;
    const key = status.name + ":" + rows.length + ":" + last + ":" + (status.counters || {}).predicted_rows;
    if (key === state.lastPredictionsKey) return;
    state.lastPredictionsKey = key;
    const yKey = valueKey(rows);
    if (!rows.length || !yKey) {
      chart.hidden = true;
      chart.dataset.points = "0";
      empty.hidden = false;
      empty.textContent = status.streaming
        ? "Streaming: waiting for rows on " + status.name + ".predict…"
        : "No streamed predictions yet. Start streaming and publish rows to " + status.name + ".predict.";
      $("predictions-note").textContent = "";
      return;
    }
    chart.hidden = false;
    empty.hidden = true;
    const total = (status.counters || {}).predicted_rows || rows.length;
    const x = rows.map((_, i) => Math.max(1, total - rows.length + i + 1));
    const y = rows.map((row) => row[yKey]);
    const hover = rows.map((row) => time(row.at));
    const flagged = rows.map((row, i) => (row.anomaly ? i : -1)).filter((i) => i >= 0);
    const traces = [
      {
        type: "scatter",
        mode: "lines+markers",
        name: yKey,
        x: x,
        y: y,
        text: hover,
        hovertemplate: "row %{x}<br>" + yKey + " %{y:.4g}<br>%{text}<extra></extra>",
        line: { color: "#2f6fdb", width: 1.5 },
        marker: { size: 4 },
      },
    ];
    if ("anomaly" in rows[0]) {
      traces.push({
        type: "scatter",
        mode: "markers",
        name: "anomaly",
        x: flagged.map((i) => x[i]),
        y: flagged.map((i) => y[i]),
        marker: { color: "#d64545", size: 9, symbol: "x" },
        hovertemplate: "anomaly at row %{x}<extra></extra>",
      });
    }
    const layout = {
      margin: { l: 50, r: 20, t: 10, b: 40 },
      xaxis: { title: { text: "streamed row" }, zeroline: false },
      yaxis: { title: { text: yKey } },
      legend: { orientation: "h", y: 1.12 },
      uirevision: status.name,
    };
    Plotly.react(chart, traces, layout, PLOT_CONFIG);
    chart.dataset.points = String(y.length);
    $("predictions-note").textContent =
      "· newest " + rows.length + " of " + fmt(total) + " rows" + (flagged.length ? ", " + flagged.length + " flagged" : "");
  }

  function renderDecisions(status) {
    const rows = (status.decisions || []).slice().reverse().slice(0, 50);
    const body = $("decisions").tBodies[0];
    if (!rows.length) {
      body.replaceChildren(el("tr", {}, [el("td", { colspan: 4, class: "muted", text: "No decisions yet." })]));
      return;
    }
    body.replaceChildren(
      ...rows.map((d) =>
        el("tr", {}, [
          el("td", { class: "nowrap", text: time(d.at) }),
          el("td", {}, [badge(d.kind)]),
          el("td", { text: d.version ? "v" + d.version : "–" }),
          el("td", { text: d.reason }),
        ])
      )
    );
  }

  function renderDeadLetters(status) {
    const dead = status.dead_letters || { total: 0, by_reason: {}, recent: [] };
    const body = $("dead-letters").tBodies[0];
    const reasons = Object.entries(dead.by_reason || {});
    $("dead-letters-note").textContent = dead.total
      ? "· " + fmt(dead.total) + " since the server started, in " + status.name + ".predict.dead"
      : "";
    if (!reasons.length) {
      body.replaceChildren(el("tr", {}, [el("td", { colspan: 2, class: "muted", text: "No dead letters." })]));
      return;
    }
    body.replaceChildren(
      ...reasons.map(([reason, count]) =>
        el("tr", {}, [el("td", { class: "num", text: fmt(count) }), el("td", { text: reason })])
      )
    );
  }

  async function refreshVersions(name) {
    const versions = await api(experimentPath(name, "/versions"));
    const body = $("versions").tBodies[0];
    if (!versions.length) {
      body.replaceChildren(el("tr", {}, [el("td", { colspan: 5, class: "muted", text: "No model versions yet." })]));
      return;
    }
    const champion = state.status ? state.status.champion_version : null;
    body.replaceChildren(
      ...versions.map((v) =>
        el("tr", {}, [
          el("td", { text: "v" + v.version }),
          el("td", {}, (v.aliases || []).map((alias) => badge(alias))),
          el("td", { text: v.creation_time ? new Date(v.creation_time).toLocaleString() : "–" }),
          el("td", { text: (v.tags || {})["observml.decision"] || "–" }),
          el("td", {}, [
            v.version === champion
              ? el("span", { class: "muted", text: "serving" })
              : (v.aliases || []).includes("challenger")
                ? el("span", { class: "muted", text: "in shadow", title: "Promote or reject it in the card above" })
                : el("button", {
                  type: "button",
                  class: "secondary",
                  text: "Serve",
                  title: "Load this version and serve it (POST /experiments/{name}/load)",
                  onclick: () => action("load version " + v.version, experimentPath(name, "/load"), "POST", { version: v.version }),
                }),
          ]),
        ])
      )
    );
  }

  // -- the open alert ------------------------------------------------------------------
  function alertKind(kind) {
    return String(kind || "signal")
      .split("+")
      .map((part) => ALERT_KINDS[part] || part)
      .join(" and ");
  }

  function renderAlert(status) {
    const alert = (status.alerts || {}).open;
    $("alert-banner").hidden = !alert;
    if (!alert) {
      state.alertKey = null;
      return;
    }
    $("alert-title").textContent = "Alert: " + alertKind(alert.kind);
    const parts = ["since " + dateTime(alert.opened_at)];
    if (alert.count > 1) parts.push("fired " + alert.count + " times, last " + time(alert.last_at));
    if (alert.version) parts.push("champion v" + alert.version);
    $("alert-when").textContent = parts.join(" · ");
    $("alert-reason").textContent = alert.reason;
    // a failed retrain says nothing about the rows: nothing to label
    $("alert-actions").hidden = String(alert.kind).split("+").every((k) => k === "retrain_failed");
    const key = status.name + "@" + alert.opened_at;
    if (state.alertKey !== key) {  // a new alert: start from its opening, keep edits after
      state.alertKey = key;
      $("alert-from").value = localInput(alert.opened_at);
      $("alert-note").value = "";
    }
  }

  async function labelSinceAlert(label) {
    const name = state.selected;
    const from = $("alert-from").value;
    if (!from) {
      showMessage("Pick the time the rows start from.", true);
      return;
    }
    const shown = from.replace("T", " ");
    const question =
      label === "fault"
        ? "Label the rows of " + name + " since " + shown + " as a FAULT?\n\n" +
          "They join the fault library: every later challenger must keep flagging them."
        : "Label the rows of " + name + " since " + shown + " as NORMAL and train a challenger?\n\n" +
          "The challenger may learn from these rows. It waits in shadow beside the champion " +
          "until you promote or reject it.";
    if (!window.confirm(question)) return;
    const note = $("alert-note").value.trim();
    setDeciding(true);
    try {
      const stored = await api(experimentPath(name, "/feedback"), {
        method: "POST",
        json: { label: label, start: new Date(from).toISOString(), reason: note },
      });
      let text = fmt(stored.rows) + " rows since " + shown + " labelled " + label;
      if (label === "normal") {
        try {
          const job = await api(experimentPath(name, "/retrain"), {
            method: "POST",
            json: { reason: "new normal confirmed by a person" + (note ? ": " + note : "") },
          });
          state.watch = { id: job.job_id, label: "retrain on the new normal" };
          text += "; training a challenger on them (job " + job.job_id + ")";
        } catch (err) {
          showMessage(text + ", but the retrain could not start: " + err.message, true);
          return;
        }
      }
      showMessage(text);
    } catch (err) {
      showMessage("labelling the rows " + label + " failed: " + err.message, true);
    } finally {
      setDeciding(false);
      state.versionsKey = null;
      poll(true);
    }
  }

  // -- the challenger in shadow ----------------------------------------------------------
  function renderShadow(status) {
    const shadow = status.shadow;
    const chart = $("shadow-chart");
    $("shadow-card").hidden = !shadow;
    if (!shadow) {
      if (state.shadowKey !== null && window.Plotly) Plotly.purge(chart);
      chart.dataset.points = "0";
      state.shadowKey = null;
      state.shadowFigure = { key: null, at: 0 };
      return;
    }
    const key = status.name + "@" + shadow.version;
    if (state.shadowKey !== key) {  // a new challenger: fresh inputs
      state.shadowKey = key;
      $("shadow-note").value = "";
      $("shadow-as-fault").checked = false;
    }
    $("shadow-title").textContent =
      "Challenger v" + shadow.version + " in shadow beside champion v" + status.champion_version;
    $("shadow-since").textContent = "since " + dateTime(shadow.since);
    $("shadow-reason").textContent =
      "Trained on " + shadow.reason + ". It scores every streamed batch beside the champion; " +
      "nothing changes for the plant until you decide.";
    const stats = [
      ["rows scored by both", fmt(shadow.rows)],
      ["champion flags", percent(shadow.champion_flag_rate)],
      ["challenger flags", percent(shadow.challenger_flag_rate)],
      ["agreement", percent(shadow.agreement)],
    ];
    if (shadow.errors) stats.push(["challenger errors", fmt(shadow.errors)]);
    $("shadow-stats").replaceChildren(
      ...stats.map(([label, value]) =>
        el("div", { class: "card" }, [el("div", { class: "label", text: label }), el("div", { class: "value", text: value })])
      )
    );
    renderGate(shadow.gate);
    const empty = $("shadow-empty");
    empty.hidden = shadow.rows > 0;
    chart.hidden = !shadow.rows;
    empty.textContent =
      "No streamed rows scored yet. The overlay of both models' scores, with both limits, " +
      "fills while " + status.name + (status.streaming ? " streams." : " streams (it is not streaming now).");
    if (!shadow.rows) return;
    const figureKey = key + ":" + shadow.rows;
    const due = Date.now() - state.shadowFigure.at >= SHADOW_FIGURE_EVERY_MS;
    const fresh = !state.shadowFigure.key || !state.shadowFigure.key.startsWith(key + ":");
    if (state.shadowFigure.key !== figureKey && (due || fresh)) {
      state.shadowFigure = { key: figureKey, at: Date.now() };
      refreshShadowFigure(status.name, shadow.version).catch(report);
    }
  }

  function renderGate(gate) {
    const box = $("shadow-gate");
    box.className = "gate";
    if (!gate) {
      box.replaceChildren(
        el("p", { class: "muted", text: "The gate's advice is not known here (the challenger was resumed from the store)." })
      );
      return;
    }
    box.className = "gate " + (gate.passed ? "passed" : "failed");
    box.replaceChildren(
      el("div", { class: "gate-head" }, [
        el("strong", { text: gate.passed ? "Gate passed" : "Gate failed" }),
        el("span", { class: "muted", text: " · advice: the decision is yours" }),
      ]),
      el(
        "ul",
        { class: "gate-checks" },
        (gate.checks || []).map((check) =>
          el("li", { class: check.passed ? "passed" : "failed" }, [
            el("span", { class: "mark", text: check.passed ? "✓" : "✗", title: check.passed ? "passed" : "failed" }),
            check.detail,
          ])
        )
      )
    );
  }

  async function refreshShadowFigure(name, version) {
    const figure = await api(experimentPath(name, "/shadow/figure"));
    const shadow = state.status && state.status.shadow;
    if (state.selected !== name || !shadow || shadow.version !== version) return;
    const layout = Object.assign({}, figure.layout || {}, {
      autosize: true,
      margin: { l: 50, r: 20, t: 10, b: 40 },
      uirevision: name + "@" + version,
    });
    delete layout.title;
    delete layout.width;
    delete layout.height;
    const chart = $("shadow-chart");
    Plotly.react(chart, figure.data || [], layout, PLOT_CONFIG);
    const first = (figure.data || [])[0] || {};
    chart.dataset.points = String((first.y || []).length);
    chart.dataset.version = String(version);
  }

  async function decide(kind) {
    const name = state.selected;
    const status = state.status;
    const shadow = status && status.shadow;
    if (!shadow) return;
    const asFault = $("shadow-as-fault").checked;
    const advice = shadow.gate
      ? "\n\n" + (shadow.gate.passed ? "The gate passed it." : "The gate FAILED it: " + shadow.gate.reason)
      : "";
    const question =
      kind === "promote"
        ? "Promote challenger v" + shadow.version + " to champion of " + name + "?\n\n" +
          "It serves the predictions from now on; Roll back returns to v" + status.champion_version + "." + advice
        : "Reject challenger v" + shadow.version + " of " + name + "?\n\n" +
          "Champion v" + status.champion_version + " serves on." +
          (asFault ? " The rows the champion flagged in the alarm are kept as a known fault." : "");
    if (!window.confirm(question)) return;
    const note = $("shadow-note").value.trim();
    setDeciding(true);
    try {
      if (kind === "promote") {
        const body = await api(experimentPath(name, "/promote"), { method: "POST", json: { reason: note } });
        showMessage("promoted: v" + body.version + " is the champion now (Roll back returns to v" + status.champion_version + ")");
      } else {
        const body = await api(experimentPath(name, "/reject"), {
          method: "POST",
          json: { reason: note, as_fault: asFault },
        });
        showMessage(
          "rejected v" + body.version + "; champion v" + status.champion_version + " serves on" +
            (body.as_fault ? "; " + fmt(body.fault_rows) + " rows kept as a known fault" : "")
        );
      }
    } catch (err) {
      showMessage(kind + " failed: " + err.message, true);
    } finally {
      setDeciding(false);
      state.versionsKey = null;
      poll(true);
    }
  }

  function setDeciding(on) {
    state.deciding = on;
    ["alert-fault", "alert-normal", "shadow-promote", "shadow-reject"].forEach((id) => {
      $(id).disabled = on;
    });
  }

  // -- reports ---------------------------------------------------------------------------
  async function refreshPlots(name) {
    const plots = await api(experimentPath(name, "/plots"));
    const make = (kind, names) => {
      if (!names.length) return [el("span", { class: "muted", text: "none" })];
      return names.map((plot) =>
        el("button", {
          type: "button",
          "data-kind": kind,
          "data-plot": plot,
          text: plot,
          onclick: () => showReport(name, kind, plot).catch(report),
        })
      );
    };
    $("report-list").replaceChildren(...make("plots", plots.reports));
    $("eda-list").replaceChildren(...make("eda", plots.eda));
    if (state.report && state.report.name === name) {
      showReport(name, state.report.kind, state.report.plot).catch(report);
    }
  }

  async function showReport(name, kind, plot) {
    state.report = { name: name, kind: kind, plot: plot };
    document.querySelectorAll(".plot-list button").forEach((button) => {
      button.classList.toggle("active", button.dataset.kind === kind && button.dataset.plot === plot);
    });
    $("report-title").textContent = (kind === "eda" ? "EDA: " : "Report: ") + plot;
    const figure = await api(experimentPath(name, "/" + kind + "/" + encodeURIComponent(plot)));
    if (!state.report || state.report.plot !== plot) return;
    const layout = Object.assign({}, figure.layout || {}, { autosize: true });
    delete layout.width;
    Plotly.react($("report-chart"), figure.data || [], layout, PLOT_CONFIG);
    $("report-chart").dataset.plot = plot;
    $("report-links").hidden = false;
  }

  function clearReport() {
    const chart = $("report-chart");
    if (window.Plotly) Plotly.purge(chart);
    delete chart.dataset.plot;
    $("report-title").textContent = "Pick a figure";
    $("report-links").hidden = true;
    $("report-list").replaceChildren(el("span", { class: "muted", text: "no model yet" }));
    $("eda-list").replaceChildren(el("span", { class: "muted", text: "no model yet" }));
  }

  async function openFigure(format) {
    const current = state.report;
    if (!current) return;
    const path = experimentPath(current.name, "/" + current.kind + "/" + encodeURIComponent(current.plot)) + "?format=" + format;
    showMessage("preparing " + format.toUpperCase() + "…");
    const response = await request(path);
    if (!response.ok) throw new ApiError(response.status, await safeJson(response));
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: current.plot + "." + format, target: "_blank" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    showMessage("");
  }

  // -- actions ---------------------------------------------------------------------------
  async function action(label, path, method, json) {
    showMessage(label + "…");
    try {
      const body = await api(path, { method: method, json: json });
      let text = label + ": done";
      if (body && body.job_id) {
        text = label + ": job " + body.job_id + " " + body.state;
        state.watch = { id: body.job_id, label: label };
      }
      else if (body && "version" in body) text = label + ": now serving v" + body.version;
      showMessage(text);
    } catch (err) {
      showMessage(label + " failed: " + err.message, true);
    }
    state.versionsKey = null;
    poll(true);
  }

  function setupActions() {
    $("stream-toggle").addEventListener("click", () => {
      const name = state.selected;
      const streaming = state.status && state.status.streaming;
      action(streaming ? "stop streaming" : "start streaming", experimentPath(name, "/stream"), streaming ? "DELETE" : "POST");
    });
    $("retrain").addEventListener("click", () => action("retrain", experimentPath(state.selected, "/retrain"), "POST"));
    $("rollback").addEventListener("click", () => action("rollback", experimentPath(state.selected, "/rollback"), "POST"));
    $("alert-fault").addEventListener("click", () => labelSinceAlert("fault"));
    $("alert-normal").addEventListener("click", () => labelSinceAlert("normal"));
    $("shadow-promote").addEventListener("click", () => decide("promote"));
    $("shadow-reject").addEventListener("click", () => decide("reject"));
    $("report-png").addEventListener("click", () => openFigure("png").catch(report));
    $("report-html").addEventListener("click", () => openFigure("html").catch(report));
  }

  // -- polling ---------------------------------------------------------------------------
  function report(err) {
    if (err && err.status === 401) return;
    showMessage(String((err && err.message) || err), true);
  }

  async function poll(force) {
    if (state.polling && !force) return;
    state.polling = true;
    try {
      const jobs = [refreshDetail()];
      if (force || state.tick % LIST_EVERY_TICKS === 0) jobs.push(refreshList());
      if (force || state.tick % HEALTH_EVERY_TICKS === 0) jobs.push(refreshHealth());
      const results = await Promise.allSettled(jobs);
      const failed = results.find((r) => r.status === "rejected");
      if (failed) {
        if (failed.reason && failed.reason.status !== 401) $("updated").textContent = "update failed: " + failed.reason.message;
      } else {
        $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      }
    } finally {
      state.polling = false;
      if (!force) state.tick += 1;
    }
  }

  window.addEventListener("DOMContentLoaded", () => {
    setupSession();
    setupActions();
    setupList();
    poll(true);
    setInterval(() => poll(false), STATUS_EVERY_MS);
  });
})();
