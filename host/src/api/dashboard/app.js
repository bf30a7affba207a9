// The jobhost dashboard: a client of the REST API, nothing more. Every value it shows comes
// from the API and goes into the page as text (createElement/textContent), never as markup.
"use strict";

(() => {
  const KEY_STORAGE = "jobhost.apiKey";
  const TENANT_STORAGE = "jobhost.tenant";
  const REFRESH_MS = 5000;
  const STATES = ["pending", "activatable", "activated", "completed", "failed", "cancelled"];
  const VIEWS = ["overview", "jobs", "incidents", "handlers", "triggers"];
  const SVG_NS = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);

  const state = {
    key: null,
    whoami: null,
    tenant: "",
    view: "overview",
    jobsPage: 1,
    incidentsPage: 1,
    filters: {},
    timer: null,
    // The generation whose refresh is in flight, if any.
    refreshing: null,
    // Bumped at log-in, log-out and tenant change: answers to older requests are dropped.
    generation: 0,
    // What each table last showed, so a refresh that brings nothing new leaves the DOM alone.
    shown: {},
    detailKey: null,
  };

  // ---------------------------------------------------------------------------------------
  // The API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
    }
    const text = search.toString();
    return text ? "?" + text : "";
  }

  async function api(method, path, body) {
    const headers = { "X-API-Key": state.key || "", Accept: "application/json" };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      // A key with characters a header cannot carry fails here too, before any request.
      throw new ApiError(0, "NETWORK", "request failed: " + e.message);
    }
    const text = await response.text();
    let payload = null;
    try {
      payload = text ? JSON.parse(text) : null;
    } catch (_) {
      payload = null;
    }
    if (response.ok && payload && payload.success === true) return payload.data;
    if (payload && payload.error && typeof payload.error === "object") {
      throw new ApiError(
        response.status,
        String(payload.error.code || "ERROR"),
        String(payload.error.message || "the request failed"),
      );
    }
    throw new ApiError(
      response.status,
      "HTTP_" + response.status,
      `${method} ${path} answered ${response.status} ${response.statusText}`.trim(),
    );
  }

  function describe(error) {
    if (error instanceof ApiError) return `${error.code}: ${error.message}`;
    return String(error && error.message ? error.message : error);
  }

  // ---------------------------------------------------------------------------------------
  // DOM helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttributes(node, attrs);
    appendChildren(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttributes(node, attrs);
    appendChildren(node, children);
    return node;
  }

  function setAttributes(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") {
        node.addEventListener(name.slice(2), value);
      } else {
        node.setAttribute(name, value === true ? "" : String(value));
      }
    }
  }

  function appendChildren(node, children) {
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function setText(id, text) {
    $(id).textContent = text;
  }

  function showError(id, error) {
    const node = $(id);
    if (error) {
      node.textContent = typeof error === "string" ? error : describe(error);
      node.hidden = false;
    } else {
      node.textContent = "";
      node.hidden = true;
    }
  }

  function banner(error) {
    showError("error-text", error);
    $("error-banner").hidden = !error;
  }

  let noticeTimer = null;
  function notice(text) {
    const node = $("notice-banner");
    node.textContent = text;
    node.hidden = !text;
    clearTimeout(noticeTimer);
    if (text) noticeTimer = setTimeout(() => notice(""), 15000);
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function formatTime(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso);
    return (
      `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
      `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
    );
  }

  function relative(iso) {
    if (!iso) return "";
    const ms = new Date(iso).getTime() - Date.now();
    if (Number.isNaN(ms)) return "";
    const abs = Math.abs(ms);
    let text;
    if (abs < 60000) text = `${Math.round(abs / 1000)} s`;
    else if (abs < 3600000) text = `${Math.round(abs / 60000)} min`;
    else if (abs < 172800000) text = `${(abs / 3600000).toFixed(1)} h`;
    else text = `${Math.round(abs / 86400000)} d`;
    return ms >= 0 ? `in ${text}` : `${text} ago`;
  }

  function timeCell(iso) {
    return el("td", { title: iso || undefined }, formatTime(iso));
  }

  function json(value) {
    if (value === undefined || value === null) return "—";
    return JSON.stringify(value, null, 2);
  }

  function count(value) {
    return typeof value === "number" && Number.isFinite(value) ? String(value) : "–";
  }

  function stateBadge(jobState) {
    return el("span", { class: `state state-${String(jobState || "unknown")}` }, jobState || "?");
  }

  // Replaces a table's rows only when what they show changed, so a refresh does not disturb
  // a user who is about to click a row.
  function renderRows(table, shownKey, data, build) {
    const signature = JSON.stringify(data, (name, value) =>
      name === "elapsed_time_ms" || name === "remaining_time_ms" ? undefined : value,
    );
    if (state.shown[shownKey] === signature) return false;
    state.shown[shownKey] = signature;
    const body = $(table).tBodies[0];
    body.replaceChildren(...data.map(build));
    return true;
  }

  // ---------------------------------------------------------------------------------------
  // Signing in and out

  async function login(key, fromStorage) {
    state.key = key;
    const generation = ++state.generation;
    showError("login-error", null);
    $("login-submit").disabled = true;
    try {
      const whoami = await api("GET", "/api/v1/whoami");
      if (generation !== state.generation) return;
      state.whoami = whoami;
      sessionStorage.setItem(KEY_STORAGE, key);
      enterApp();
    } catch (error) {
      if (generation !== state.generation) return;
      state.key = null;
      if (fromStorage && error instanceof ApiError && error.status === 401) {
        sessionStorage.removeItem(KEY_STORAGE);
      }
      showLogin(describe(error));
    } finally {
      $("login-submit").disabled = false;
    }
  }

  function showLogin(message) {
    $("app").hidden = true;
    $("session").hidden = true;
    closeDetail();
    $("login").hidden = false;
    showError("login-error", message || null);
    $("api-key").focus();
  }

  function logout(message) {
    state.generation++;
    state.key = null;
    state.whoami = null;
    stopRefresh();
    sessionStorage.removeItem(KEY_STORAGE);
    sessionStorage.removeItem(TENANT_STORAGE);
    clearData();
    banner(null);
    notice("");
    $("api-key").value = "";
    showLogin(message);
  }

  // Nothing of one key's data stays in the page after logging out.
  function clearData() {
    state.shown = {};
    for (const id of [
      "jobs-table",
      "incidents-table",
      "handlers-table",
      "triggers-table",
      "by-type-table",
      "by-tenant-table",
    ]) {
      $(id).tBodies[0].replaceChildren();
    }
    $("chart").replaceChildren();
    clearDetail();
    for (const id of ["jobs-summary", "chart-totals", "key-id", "refresh-status"]) {
      setText(id, "");
    }
    showError("stats-status", null);
    for (const name of ["total", ...STATES]) setText("count-" + name, "–");
    setText("duration-stats", "–");
    $("tenant-select").replaceChildren();
    $("incident-badge").hidden = true;
  }

  function enterApp() {
    const whoami = state.whoami;
    $("login").hidden = true;
    $("app").hidden = false;
    $("session").hidden = false;
    $("api-key").value = "";
    const scope = whoami.tenants === null ? "every tenant" : "tenants: " + (whoami.tenants || []).join(", ");
    setText("key-id", `key ${whoami.key_id} · ${(whoami.permissions || []).join(", ")} · ${scope}`);
    fillTenants();
    showView(viewFromHash(), false);
    startRefresh();
  }

  function fillTenants() {
    const whoami = state.whoami;
    const select = $("tenant-select");
    const tenants = new Set(whoami.known_tenants || []);
    for (const tenant of whoami.tenants || []) tenants.add(tenant);
    const all = whoami.tenants === null ? "All tenants" : "All my tenants";
    const options = [el("option", { value: "" }, all)];
    for (const tenant of [...tenants].sort()) options.push(el("option", { value: tenant }, tenant));
    select.replaceChildren(...options);
    const saved = sessionStorage.getItem(TENANT_STORAGE) || "";
    state.tenant = tenants.has(saved) ? saved : "";
    select.value = state.tenant;
  }

  // ---------------------------------------------------------------------------------------
  // Views and refreshing

  function viewFromHash() {
    const name = location.hash.replace(/^#/, "");
    return VIEWS.includes(name) ? name : "overview";
  }

  function showView(view, load = true) {
    state.view = view;
    for (const name of VIEWS) {
      $("view-" + name).hidden = name !== view;
      const tab = $("tab-" + name);
      tab.setAttribute("aria-selected", String(name === view));
      tab.classList.toggle("active", name === view);
    }
    if (location.hash !== "#" + view) history.replaceState(null, "", "#" + view);
    if (load && state.key) refreshView();
  }

  function startRefresh() {
    stopRefresh();
    refresh();
    state.timer = setInterval(() => {
      if (!document.hidden) refresh();
    }, REFRESH_MS);
  }

  function stopRefresh() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
  }

  async function refresh() {
    // On a slow server a refresh may take longer than the interval; never stack them.
    const generation = state.generation;
    if (state.refreshing === generation || !state.key) return;
    state.refreshing = generation;
    setText("refresh-status", "refreshing…");
    try {
      await Promise.all([refreshTenants(), refreshCounts(), refreshView()]);
      if (generation === state.generation) {
        setText("refresh-status", "updated " + formatTime(new Date().toISOString()).slice(11));
      }
    } finally {
      if (state.refreshing === generation) state.refreshing = null;
    }
  }

  // New tenants (a first job, handler or trigger) join the selector without signing in again.
  async function refreshTenants() {
    const generation = state.generation;
    try {
      const whoami = await api("GET", "/api/v1/whoami");
      if (generation !== state.generation || !state.whoami) return;
      const known = (w) => JSON.stringify([w.tenants, w.known_tenants]);
      if (known(whoami) !== known(state.whoami)) {
        state.whoami = whoami;
        fillTenants();
      }
    } catch (error) {
      if (generation !== state.generation) return;
      if (error instanceof ApiError && error.status === 401) logout("Signed out: " + describe(error));
    }
  }

  function refreshView() {
    switch (state.view) {
      case "jobs":
        return loadJobs();
      case "incidents":
        return loadIncidents();
      case "handlers":
        return loadHandlers();
      case "triggers":
        return loadTriggers();
      default:
        return Promise.resolve();
    }
  }

  // Runs a request for the current session; answers that arrive after a log-out or tenant
  // change are ignored, and a key that stopped working ends the session.
  async function load(request, render, errorId) {
    const generation = state.generation;
    try {
      const data = await request();
      if (generation !== state.generation) return;
      if (errorId) showError(errorId, null);
      render(data);
    } catch (error) {
      if (generation !== state.generation) return;
      if (error instanceof ApiError && error.status === 401) {
        logout("Signed out: " + describe(error));
        return;
      }
      if (errorId) showError(errorId, error);
      else banner(error);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Counts and the chart

  async function refreshCounts() {
    const generation = state.generation;
    let stats = null;
    let failure = null;
    try {
      stats = await api("GET", "/api/v1/jobs/stats" + query({ tenant_id: state.tenant }));
      if (!stats || typeof stats !== "object" || !stats.by_state) {
        stats = null;
        failure = "unexpected answer";
      }
    } catch (error) {
      failure = error;
    }
    if (generation !== state.generation) return;
    if (failure instanceof ApiError && failure.status === 401) {
      logout("Signed out: " + describe(failure));
      return;
    }
    if (stats) {
      showError("stats-status", null);
      renderCounts({ total: stats.total_jobs, ...stats.by_state });
      renderChart(stats.per_minute);
      renderDuration(stats.duration);
      renderGroups("by-type-table", "by-type", stats.by_type);
      renderGroups("by-tenant-table", "by-tenant", stats.by_tenant);
      return;
    }
    // Without statistics the dashboard still works: counts come from the listing's summary.
    showError("stats-status", "stats unavailable (" + describe(failure) + ")");
    $("chart").replaceChildren(el("p", { class: "muted", "data-testid": "chart-unavailable" }, "stats unavailable"));
    setText("chart-totals", "");
    setText("duration-stats", "–");
    renderGroups("by-type-table", "by-type", {});
    renderGroups("by-tenant-table", "by-tenant", {});
    let listing = null;
    try {
      listing = await api("GET", "/api/v1/jobs" + query({ tenant_id: state.tenant, page_size: 1 }));
    } catch (error) {
      if (generation !== state.generation) return;
      if (error instanceof ApiError && error.status === 401) {
        logout("Signed out: " + describe(error));
        return;
      }
      renderCounts({});
      return;
    }
    if (generation !== state.generation) return;
    const s = (listing && listing.summary) || {};
    renderCounts({
      total: s.total_jobs ?? (listing && listing.pagination ? listing.pagination.total_count : undefined),
      pending: s.pending_jobs,
      activatable: s.activatable_jobs,
      activated: s.activated_jobs,
      completed: s.completed_jobs,
      failed: s.failed_jobs,
      cancelled: s.cancelled_jobs,
    });
  }

  function renderCounts(counts) {
    setText("count-total", count(counts.total));
    for (const name of STATES) setText("count-" + name, count(counts[name]));
    const badge = $("incident-badge");
    const failed = counts.failed;
    badge.hidden = !(typeof failed === "number" && failed > 0);
    badge.textContent = badge.hidden ? "" : String(failed);
  }

  function renderDuration(duration) {
    if (!duration || typeof duration !== "object") {
      setText("duration-stats", "–");
      return;
    }
    const ms = (v) => (typeof v === "number" && Number.isFinite(v) ? `${v.toFixed(v < 10 ? 1 : 0)} ms` : "–");
    setText(
      "duration-stats",
      `creation to completion, last hour: average ${ms(duration.avg_ms)}, ` +
        `95th percentile ${ms(duration.p95_ms)}, ${count(duration.samples)} completions`,
    );
  }

  function renderGroups(table, shownKey, groups) {
    const rows = Object.entries(groups && typeof groups === "object" ? groups : {}).sort(([a], [b]) =>
      a < b ? -1 : a > b ? 1 : 0,
    );
    renderRows(table, shownKey, rows, ([name, c]) =>
      el(
        "tr",
        {},
        el("td", {}, name),
        el("td", {}, count(c.total)),
        el("td", {}, count((c.pending || 0) + (c.activatable || 0) + (c.activated || 0))),
        el("td", {}, count(c.completed)),
        el("td", {}, count(c.failed)),
        el("td", {}, count(c.cancelled)),
      ),
    );
  }

  // A stacked bar per minute: completed at the bottom, failed on top.
  function renderChart(perMinute) {
    const chart = $("chart");
    if (!Array.isArray(perMinute) || perMinute.length === 0) {
      chart.replaceChildren(el("p", { class: "muted" }, "no per-minute data"));
      setText("chart-totals", "");
      return;
    }
    const minutes = perMinute.map((m) => ({
      minute: m && m.minute,
      completed: Number(m && m.completed) || 0,
      failed: Number(m && m.failed) || 0,
    }));
    const width = 720;
    const height = 200;
    const left = 36;
    const bottom = 22;
    const top = 8;
    const plotWidth = width - left - 4;
    const plotHeight = height - top - bottom;
    const peak = Math.max(1, ...minutes.map((m) => m.completed + m.failed));
    const scale = niceCeiling(peak);
    const slot = plotWidth / minutes.length;
    const barWidth = Math.max(1, slot * 0.75);
    const y = (value) => top + plotHeight - (value / scale) * plotHeight;

    const root = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": "completed and failed jobs per minute over the last hour",
      id: "throughput-chart",
      "data-testid": "throughput-chart",
      class: "throughput",
    });
    // Counts are whole numbers: a middle grid line only where it falls on one.
    const ticks = Number.isInteger(scale / 2) ? [0, scale / 2, scale] : [0, scale];
    for (const value of ticks) {
      root.append(
        svg("line", { x1: left, x2: width - 4, y1: y(value), y2: y(value), class: "grid" }),
        svg("text", { x: left - 4, y: y(value) + 4, class: "axis", "text-anchor": "end" }, formatCount(value)),
      );
    }
    minutes.forEach((m, i) => {
      const x = left + i * slot + (slot - barWidth) / 2;
      const group = svg("g", {
        class: "minute",
        "data-testid": "chart-minute",
        "data-minute": m.minute || "",
        "data-completed": m.completed,
        "data-failed": m.failed,
      });
      group.append(
        svg("title", {}, `${formatTime(m.minute).slice(11, 16)}: ${m.completed} completed, ${m.failed} failed`),
        svg("rect", { x: left + i * slot, y: top, width: slot, height: plotHeight, class: "hit" }),
      );
      const completedHeight = (m.completed / scale) * plotHeight;
      const failedHeight = (m.failed / scale) * plotHeight;
      if (m.completed > 0) {
        group.append(
          svg("rect", {
            x,
            y: top + plotHeight - completedHeight,
            width: barWidth,
            height: completedHeight,
            class: "bar-completed",
          }),
        );
      }
      if (m.failed > 0) {
        group.append(
          svg("rect", {
            x,
            y: top + plotHeight - completedHeight - failedHeight,
            width: barWidth,
            height: failedHeight,
            class: "bar-failed",
          }),
        );
      }
      root.append(group);
    });
    const label = (i, anchor) =>
      svg(
        "text",
        { x: left + (i + 0.5) * slot, y: height - 6, class: "axis", "text-anchor": anchor },
        formatTime(minutes[i].minute).slice(11, 16),
      );
    root.append(
      label(0, "start"),
      label(Math.floor(minutes.length / 2), "middle"),
      label(minutes.length - 1, "end"),
    );
    chart.replaceChildren(root);
    const completed = minutes.reduce((sum, m) => sum + m.completed, 0);
    const failed = minutes.reduce((sum, m) => sum + m.failed, 0);
    setText("chart-totals", `last hour: ${completed} completed, ${failed} failed`);
    $("chart-totals").dataset.completed = String(completed);
    $("chart-totals").dataset.failed = String(failed);
  }

  function niceCeiling(value) {
    const magnitude = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 5, 10]) {
      if (step * magnitude >= value) return step * magnitude;
    }
    return 10 * magnitude;
  }

  function formatCount(value) {
    return Number.isInteger(value) ? String(value) : value.toFixed(1);
  }

  // ---------------------------------------------------------------------------------------
  // Jobs

  function readFilters() {
    const filters = {};
    for (const field of $("jobs-filters").elements) {
      if (!field.name || !field.value) continue;
      let value = field.value.trim();
      if (field.type === "datetime-local") {
        const date = new Date(value);
        if (Number.isNaN(date.getTime())) throw new Error(`${field.name} is not a valid time`);
        value = date.toISOString();
      }
      filters[field.name] = value;
    }
    return filters;
  }

  function loadJobs() {
    const params = { ...state.filters, tenant_id: state.tenant, page: state.jobsPage };
    return load(
      () => api("GET", "/api/v1/jobs" + query(params)),
      (listing) => renderJobs(listing),
      "jobs-error",
    );
  }

  function renderJobs(listing) {
    const jobs = Array.isArray(listing && listing.jobs) ? listing.jobs : [];
    const paging = (listing && listing.pagination) || {};
    renderRows("jobs-table", "jobs", jobs, (job) =>
      el(
        "tr",
        {
          "data-testid": "job-row",
          "data-job-key": job.job_key,
          "data-state": job.state,
          tabindex: 0,
          title: "Show job " + job.job_key,
          onclick: () => openDetail(job.job_key),
          onkeydown: (event) => {
            if (event.key === "Enter") openDetail(job.job_key);
          },
        },
        el("td", { class: "mono" }, job.job_key),
        el("td", {}, job.type),
        el("td", {}, stateBadge(job.state)),
        el("td", {}, job.tenant_id),
        el("td", { class: "mono" }, job.worker_id || ""),
        el("td", {}, count(job.retries)),
        timeCell(job.created_at),
        timeCell(job.activated_at),
        el(
          "td",
          { title: job.deadline || undefined },
          job.deadline ? formatTime(job.deadline) : "",
          typeof job.remaining_time_ms === "number" ? ` (${Math.round(job.remaining_time_ms / 1000)} s left)` : "",
        ),
        el("td", { class: "error-cell" }, job.error_message || ""),
      ),
    );
    $("jobs-empty").hidden = jobs.length > 0;
    renderPager("jobs", paging);
    const s = listing && listing.summary;
    const total = typeof paging.total_count === "number" ? paging.total_count : jobs.length;
    let summary = `${total} job${total === 1 ? "" : "s"}`;
    if (s && typeof s === "object") {
      const parts = [
        `active ${count(s.active_jobs)}`,
        `completed ${count(s.completed_jobs)}`,
        `failed ${count(s.failed_jobs)}`,
        `cancelled ${count(s.cancelled_jobs)}`,
      ];
      if (typeof s.success_rate_percent === "number") parts.push(`success rate ${s.success_rate_percent}%`);
      if (typeof s.avg_duration_seconds === "number") parts.push(`average run ${s.avg_duration_seconds} s`);
      summary += " · " + parts.join(" · ");
    }
    setText("jobs-summary", summary);
  }

  function renderPager(prefix, paging) {
    $(prefix + "-prev").disabled = !paging.has_prev;
    $(prefix + "-next").disabled = !paging.has_next;
    const pages = Math.max(1, Number(paging.total_pages) || 1);
    setText(prefix + "-page-info", `page ${count(paging.page)} of ${pages}`);
  }

  // ---------------------------------------------------------------------------------------
  // Incidents

  function loadIncidents() {
    const params = { state: "failed", tenant_id: state.tenant, page: state.incidentsPage, page_size: 50 };
    return load(
      () => api("GET", "/api/v1/jobs" + query(params)),
      (listing) => renderIncidents(listing),
      "incidents-error",
    );
  }

  function renderIncidents(listing) {
    const jobs = Array.isArray(listing && listing.jobs) ? listing.jobs : [];
    renderRows("incidents-table", "incidents", jobs, (job) => {
      const retries = el("input", {
        type: "number",
        min: 1,
        max: 1000,
        value: Math.max(1, Number(job.original_retries) || 1),
        class: "retries-input",
        "data-testid": "retry-count",
        "aria-label": "retries for job " + job.job_key,
      });
      const button = el("button", { type: "button", "data-testid": "retry-button" }, "Retry");
      button.addEventListener("click", () => retry(job.job_key, retries.value, button));
      return el(
        "tr",
        { "data-testid": "incident-row", "data-job-key": job.job_key },
        el(
          "td",
          { class: "mono" },
          el("button", { type: "button", class: "link", onclick: () => openDetail(job.job_key) }, job.job_key),
        ),
        el("td", {}, job.type),
        el("td", {}, job.tenant_id),
        timeCell(job.failed_at),
        el("td", { class: "error-cell", "data-testid": "incident-error" }, job.error_message || ""),
        el("td", {}, String((job.failure_history || []).length)),
        el("td", {}, retries),
        el("td", {}, button),
      );
    });
    $("incidents-empty").hidden = jobs.length > 0;
    renderPager("incidents", (listing && listing.pagination) || {});
  }

  async function retry(key, retriesText, button) {
    const retries = Number.parseInt(retriesText, 10);
    if (!Number.isInteger(retries) || retries < 1) {
      banner(`Retries for job ${key} must be a whole number of at least 1`);
      return;
    }
    if (button) button.disabled = true;
    banner(null);
    const generation = state.generation;
    try {
      const job = await api("PUT", `/api/v1/jobs/${encodeURIComponent(key)}/retries`, { retries });
      if (generation !== state.generation) return;
      notice(`Job ${job.job_key} now has ${job.retries} retries and is ${job.state}.`);
      state.shown.incidents = null;
      state.shown.jobs = null;
      if (state.detailKey === key) openDetail(key);
      await Promise.all([refreshCounts(), refreshView()]);
    } catch (error) {
      if (generation !== state.generation) return;
      if (error instanceof ApiError && error.status === 401) {
        logout("Signed out: " + describe(error));
        return;
      }
      banner(`Retry of job ${key} failed: ${describe(error)}`);
    } finally {
      if (button) button.disabled = false;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Job detail

  async function openDetail(key) {
    if (state.detailKey !== key) clearDetail();
    state.detailKey = key;
    $("job-detail").hidden = false;
    $("job-detail-backdrop").hidden = false;
    setText("detail-title", "Job " + key);
    $("job-detail").dataset.jobKey = key;
    $("job-detail").dataset.loaded = "false";
    const generation = state.generation;
    try {
      const job = await api("GET", `/api/v1/jobs/${encodeURIComponent(key)}`);
      if (generation !== state.generation || state.detailKey !== key) return;
      showError("detail-error", null);
      renderDetail(job);
      $("job-detail").dataset.loaded = "true";
    } catch (error) {
      if (generation !== state.generation || state.detailKey !== key) return;
      if (error instanceof ApiError && error.status === 401) {
        logout("Signed out: " + describe(error));
        return;
      }
      showError("detail-error", error);
    }
  }

  function clearDetail() {
    for (const id of ["detail-fields", "detail-actions", "detail-attempts"]) $(id).replaceChildren();
    $("detail-failures").tBodies[0].replaceChildren();
    for (const id of ["detail-variables", "detail-headers", "detail-result", "detail-title"]) setText(id, "");
    showError("detail-error", null);
  }

  function closeDetail() {
    state.detailKey = null;
    $("job-detail").hidden = true;
    $("job-detail-backdrop").hidden = true;
  }

  function renderDetail(job) {
    setText("detail-title", `Job ${job.job_key} · ${job.type}`);
    const fields = [
      ["state", stateBadge(job.state)],
      ["status", job.status],
      ["tenant", job.tenant_id],
      ["worker", job.worker_id],
      ["retries", `${count(job.retries)} of ${count(job.original_retries)}`],
      ["priority", job.priority],
      ["activations", job.activations],
      ["timeout", typeof job.timeout_ms === "number" && job.timeout_ms > 0 ? `${job.timeout_ms} ms` : null],
      ["created", formatTime(job.created_at)],
      ["due", job.due_at ? `${formatTime(job.due_at)} (${relative(job.due_at)})` : null],
      ["activated", formatTime(job.activated_at)],
      ["deadline", job.deadline ? `${formatTime(job.deadline)} (${relative(job.deadline)})` : null],
      ["elapsed", typeof job.elapsed_time_ms === "number" ? `${job.elapsed_time_ms} ms` : null],
      ["completed", formatTime(job.completed_at)],
      ["failed", formatTime(job.failed_at)],
      ["cancelled", formatTime(job.cancelled_at)],
      ["incident", job.incident_id],
      ["error", job.error_message],
      ["process instance", job.process_instance_id],
      ["BPMN process", job.bpmn_process_id],
      ["process definition", job.process_definition_key],
      ["definition version", job.process_definition_version],
      ["element", job.element_id],
      ["element instance", job.element_instance_id],
    ];
    const summary = job.execution_summary;
    if (summary && typeof summary === "object") {
      fields.push(["run time", `${count(summary.total_duration_ms)} ms`]);
      fields.push(["retries used", summary.retries_used]);
    }
    const list = [];
    for (const [name, value] of fields) {
      if (value === null || value === undefined || value === "") continue;
      list.push(el("dt", {}, name), el("dd", { "data-field": name }, value));
    }
    $("detail-fields").replaceChildren(...list);

    const actions = [];
    if (job.state === "failed") {
      const retries = el("input", {
        type: "number",
        min: 1,
        max: 1000,
        value: Math.max(1, Number(job.original_retries) || 1),
        class: "retries-input",
        "data-testid": "detail-retry-count",
        "aria-label": "retries",
      });
      const button = el("button", { type: "button", "data-testid": "detail-retry" }, "Retry");
      button.addEventListener("click", () => retry(job.job_key, retries.value, button));
      actions.push(el("label", {}, "Retries ", retries), button);
    }
    $("detail-actions").replaceChildren(...actions);

    setText("detail-variables", json(job.variables));
    const headers = job.custom_headers;
    setText("detail-headers", headers && Object.keys(headers).length ? json(headers) : "—");
    setText(
      "detail-result",
      summary && summary.result_variables !== undefined ? json(summary.result_variables) : "— (not completed)",
    );

    const failures = Array.isArray(job.failure_history) ? job.failure_history : [];
    $("detail-failures").tBodies[0].replaceChildren(
      ...failures.map((f) =>
        el(
          "tr",
          { "data-testid": "failure-row" },
          el("td", {}, count(f.attempt)),
          timeCell(f.failed_at),
          el("td", { class: "mono" }, f.worker_id || ""),
          el("td", {}, count(f.retries)),
          el("td", { class: "error-cell" }, f.error || ""),
        ),
      ),
    );
    $("detail-failures").hidden = failures.length === 0;
    $("detail-no-failures").hidden = failures.length > 0;

    const attempts = Array.isArray(job.attempts) ? job.attempts : [];
    const blocks = attempts.map((a) =>
      el(
        "div",
        { class: "attempt", "data-testid": "attempt" },
        el(
          "p",
          {},
          el("strong", {}, `attempt ${count(a.attempt)}`),
          ` · ${a.worker_id || ""} · handler v${count(a.handler_version)} · `,
          formatTime(a.started_at),
          ` · ${typeof a.duration_us === "number" ? (a.duration_us / 1000).toFixed(1) : "?"} ms · `,
          el("span", { class: a.outcome === "completed" ? "ok" : "bad" }, a.outcome || ""),
        ),
        el("pre", { "data-testid": "attempt-output" }, a.output || "(no output)"),
      ),
    );
    $("detail-attempts").replaceChildren(
      ...(blocks.length ? blocks : [el("p", { class: "muted" }, "No Wasm attempts.")]),
    );
  }

  // ---------------------------------------------------------------------------------------
  // Handlers and triggers

  function loadHandlers() {
    return load(
      () => api("GET", "/api/v1/handlers"),
      (data) => {
        const handlers = Array.isArray(data && data.handlers) ? data.handlers : [];
        const shown = handlers.filter((h) => !state.tenant || h.tenant_id === state.tenant);
        renderRows("handlers-table", "handlers", shown, (h) =>
          el(
            "tr",
            { "data-testid": "handler-row", "data-handler-id": h.id },
            el("td", {}, h.type),
            el("td", {}, h.tenant_id),
            el("td", { class: "mono" }, h.id),
            el("td", {}, "v" + count(h.current_version)),
            el("td", { class: "mono" }, h.worker || ""),
            el(
              "td",
              {},
              h.load ? `${h.load.source}, ${Number(h.load.millis || 0).toFixed(1)} ms` : "",
            ),
            el(
              "td",
              {},
              el(
                "ul",
                { class: "versions" },
                (h.versions || []).map((v) =>
                  el(
                    "li",
                    { title: "sha256 " + (v.sha256 || "") },
                    `v${count(v.version)} · ${formatTime(v.deployed_at)} · ${Math.round((v.bytes || 0) / 1024)} KiB` +
                      (v.limits
                        ? ` · ${count(v.limits.memory_mb)} MiB, ${count(v.limits.timeout_ms)} ms, ` +
                          `${count(v.limits.max_concurrency)} at once` +
                          (v.limits.fuel ? `, fuel ${v.limits.fuel}` : "")
                        : "") +
                      (v.retry
                        ? ` · ${count(v.retry.max_retries)} retries, backoff ${count(v.retry.backoff_ms)}` +
                          `–${count(v.retry.backoff_cap_ms)} ms`
                        : "") +
                      grantsText(v.grants),
                  ),
                ),
              ),
            ),
          ),
        );
        $("handlers-empty").hidden = shown.length > 0;
      },
      "handlers-error",
    );
  }

  // A version's grants in a few words: names and patterns only (values are never sent).
  function grantsText(grants) {
    if (!grants) return "";
    const parts = [];
    if ((grants.allow_http || []).length) parts.push("http " + grants.allow_http.join(", "));
    if ((grants.secrets || []).length) parts.push("secrets " + grants.secrets.join(", "));
    const config = Object.keys(grants.config || {});
    if (config.length) parts.push("config " + config.join(", "));
    if ((grants.kv || []).length) parts.push("kv " + grants.kv.join(", "));
    if ((grants.inject_headers || []).length) {
      parts.push(grants.inject_headers.length + " injected header(s)");
    }
    return parts.length ? " · grants: " + parts.join("; ") : " · no grants";
  }

  function loadTriggers() {
    return load(
      () => api("GET", "/api/v1/triggers" + query({ tenant_id: state.tenant })),
      (data) => {
        const triggers = Array.isArray(data && data.triggers) ? data.triggers : [];
        renderRows("triggers-table", "triggers", triggers, (t) =>
          el(
            "tr",
            { "data-testid": "trigger-row", "data-trigger-id": t.id },
            el("td", {}, t.name),
            el("td", {}, t.tenant_id),
            el("td", {}, t.type),
            el(
              "td",
              { class: "mono" },
              t.cron ? `cron ${t.cron}${t.time_zone ? " (" + t.time_zone + ")" : ""}` : `every ${t.interval || "?"}`,
            ),
            el("td", {}, el("span", { class: "trigger-" + String(t.status) }, t.status || "")),
            el(
              "td",
              { title: t.next_fire_at || undefined, "data-testid": "trigger-next-fire" },
              t.next_fire_at ? `${formatTime(t.next_fire_at)} (${relative(t.next_fire_at)})` : "—",
            ),
            timeCell(t.last_fire_at),
            el(
              "td",
              { class: "mono" },
              t.last_job_key
                ? el("button", { type: "button", class: "link", onclick: () => openDetail(t.last_job_key) }, t.last_job_key)
                : "",
            ),
            el("td", {}, count(t.fired_count)),
            el("td", {}, `${count(t.skipped_count)} / ${count(t.missed_count)}`),
          ),
        );
        $("triggers-empty").hidden = triggers.length > 0;
      },
      "triggers-error",
    );
  }

  // ---------------------------------------------------------------------------------------
  // Wiring

  function init() {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("api-key").value.trim();
      if (!key) {
        showError("login-error", "Enter an API key.");
        return;
      }
      login(key, false);
    });
    $("logout").addEventListener("click", () => logout(null));
    $("error-dismiss").addEventListener("click", () => banner(null));
    $("tenant-select").addEventListener("change", (event) => {
      state.tenant = event.target.value;
      sessionStorage.setItem(TENANT_STORAGE, state.tenant);
      state.generation++;
      state.shown = {};
      state.jobsPage = 1;
      state.incidentsPage = 1;
      closeDetail();
      refresh();
    });
    for (const view of VIEWS) {
      $("tab-" + view).addEventListener("click", () => showView(view));
    }
    window.addEventListener("hashchange", () => showView(viewFromHash()));

    $("jobs-filters").addEventListener("submit", (event) => {
      event.preventDefault();
      try {
        state.filters = readFilters();
      } catch (error) {
        showError("jobs-error", error.message);
        return;
      }
      state.jobsPage = 1;
      state.shown.jobs = null;
      loadJobs();
    });
    $("filter-reset").addEventListener("click", () => {
      $("jobs-filters").reset();
      state.filters = {};
      state.jobsPage = 1;
      state.shown.jobs = null;
      loadJobs();
    });
    $("jobs-prev").addEventListener("click", () => {
      state.jobsPage = Math.max(1, state.jobsPage - 1);
      loadJobs();
    });
    $("jobs-next").addEventListener("click", () => {
      state.jobsPage += 1;
      loadJobs();
    });
    $("incidents-prev").addEventListener("click", () => {
      state.incidentsPage = Math.max(1, state.incidentsPage - 1);
      loadIncidents();
    });
    $("incidents-next").addEventListener("click", () => {
      state.incidentsPage += 1;
      loadIncidents();
    });

    $("detail-close").addEventListener("click", closeDetail);
    $("job-detail-backdrop").addEventListener("click", closeDetail);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !$("job-detail").hidden) closeDetail();
    });

    const saved = sessionStorage.getItem(KEY_STORAGE);
    if (saved) login(saved, true);
    else showLogin(null);
    document.body.dataset.ready = "true";
  }

  init();
})();
