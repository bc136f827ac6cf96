// The operations dashboard: plain DOM, no framework, no build step.
//
// Every request goes to this origin's management API with the key as a Bearer header; the key
// lives in sessionStorage only. Every name and message from the API is written with
// textContent (never as HTML), so a name like <img src=x onerror=...> stays text. Forms are
// generated from the API's own OpenAPI document and submit to the same routes a script uses.

const KEY = "churnguard.apiKey";
const main = document.getElementById("view");
const nav = document.getElementById("nav");
const refreshSeconds = Math.max(5, Number(document.body.dataset.refresh || 60));
const RUNNING_REFRESH_SECONDS = 2;
let timer = null;
let openapi = null;
let renderToken = 0;

// ------------------------------------------------------------------ DOM helpers

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = String(value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "value") node.value = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function put(node, ...children) {
  node.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
}

function when(iso) {
  if (!iso) return "—";
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  const future = seconds < 0;
  const span = Math.abs(seconds);
  const text = span < 90 ? `${Math.round(span)} s` : span < 5400 ? `${Math.round(span / 60)} min` : span < 172800 ? `${(span / 3600).toFixed(1)} h` : `${(span / 86400).toFixed(1)} d`;
  return future ? `in ${text}` : `${text} ago`;
}

function byteSize(count) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = count, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

// A real-time database's change capture: where it is, what the database holds for us and for how long.
function captureView(c) {
  const held = c.retained_bytes === null ? "log held for us not measured yet" : `${byteSize(c.retained_bytes)} of log held for us`;
  const left = c.seconds_left === null ? "" : ` · ${duration(c.seconds_left)} until the database would drop our position`;
  return el("div", { id: "change-capture" },
    el("h3", { text: "Change capture" }),
    el("p", { id: "change-capture-figures", class: c.risk && c.risk !== "ok" ? "error-text" : "muted", text: `${c.phase}${c.running ? "" : " (stopped)"} · ${c.changes_landed} changes landed · ${held}${left}` }),
    c.problems.map((problem) => el("p", { class: "error-text", text: problem })),
    c.last_note ? el("p", { class: "muted", text: c.last_note }) : null);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function badge(state, score) {
  return el("span", { class: `badge state-${state}`, title: state, "data-state": state, text: score === undefined ? state : `${score}` });
}

function table(headers, rows, attributes = {}) {
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      attributes,
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", class: h.narrow ? "hide-narrow" : null, text: h.label || h })))),
      el("tbody", {}, rows),
    ),
  );
}

function notice(text, bad = false) {
  return el("div", { class: bad ? "notice bad" : "notice", role: bad ? "alert" : "status", text });
}

// ------------------------------------------------------------------ API

function apiKey() {
  return sessionStorage.getItem(KEY);
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${apiKey()}` };
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    renderLogin("The API key is invalid or was revoked; enter a valid key.");
    throw new Error("unauthorised");
  }
  return { status: response.status, ok: response.ok, body: data };
}

async function document_() {
  if (!openapi) {
    const response = await fetch("/api/openapi.json", { cache: "no-store" });
    openapi = await response.json();
  }
  return openapi;
}

function errorText(response) {
  const error = response.body && response.body.error;
  return error ? error.message : `HTTP ${response.status}`;
}

// ------------------------------------------------------------------ refresh

function schedule(seconds, again) {
  if (timer) clearTimeout(timer);
  timer = setTimeout(() => {
    if (!document.hidden) again();
    else schedule(seconds, again);
  }, seconds * 1000);
}

// ------------------------------------------------------------------ schema-driven forms

function resolve(schema) {
  let optional = false;
  let current = schema || {};
  if (current.anyOf) {
    const options = current.anyOf.filter((option) => option.type !== "null");
    optional = options.length !== current.anyOf.length;
    current = { ...options[0], description: current.description || options[0].description, default: current.default, title: current.title || options[0].title };
  }
  if (current.$ref) {
    const name = current.$ref.split("/").pop();
    current = { ...openapi.components.schemas[name], description: current.description || openapi.components.schemas[name].description, default: current.default };
  }
  return { schema: current, optional };
}

function label(name, raw) {
  // The property's own title, not a referenced schema's (which names a type, e.g. DataSyncMode).
  const own = raw && !raw.$ref && !(raw.anyOf || []).some((option) => option.$ref) ? raw.title : null;
  return own || name.replaceAll("_", " ").replace(/^./, (c) => c.toUpperCase());
}

function fieldsFor(schemaName, prefix, options) {
  const schema = openapi.components.schemas[schemaName];
  return buildFields(schema, prefix, options);
}

function buildFields(schema, prefix, options) {
  const required = new Set(schema.required || []);
  const nodes = [];
  for (const [name, raw] of Object.entries(schema.properties || {})) {
    const path = prefix ? `${prefix}.${name}` : name;
    if ((options.skip || []).includes(path)) continue;
    const { schema: field } = resolve(raw);
    if (field.type === "object" && field.properties) {
      const legend = el("legend", { text: label(name, raw) });
      nodes.push(el("fieldset", { "data-group": path }, legend, buildFields(field, path, options)));
      continue;
    }
    nodes.push(inputFor(name, path, field, raw, required.has(name), options));
  }
  return nodes;
}

function inputFor(name, path, field, raw, isRequired, options) {
  const id = `f-${path.replaceAll(".", "-")}`;
  const preset = (options.values || {})[path];
  const defaultValue = preset !== undefined ? preset : raw.default !== undefined ? raw.default : field.default;
  let input;
  let kind = "text";
  if (field.enum) {
    kind = "enum";
    input = el("select", { id }, isRequired ? null : el("option", { value: "", text: "—" }), field.enum.map((value) => el("option", { value, text: value })));
    if (defaultValue !== undefined && defaultValue !== null) input.value = defaultValue;
  } else if (field.type === "boolean") {
    kind = "bool";
    input = el("input", { id, type: "checkbox" });
    input.checked = Boolean(defaultValue);
  } else if (field.type === "integer" || field.type === "number") {
    kind = "number";
    input = el("input", { id, type: "number", min: field.minimum, max: field.maximum, step: field.type === "integer" ? 1 : "any" });
    if (defaultValue !== undefined && defaultValue !== null) input.value = defaultValue;
  } else if (field.type === "object") {
    kind = "map";
    input = el("textarea", { id, placeholder: "one per line: key = value", autocomplete: "off", spellcheck: "false" });
  } else if (field.type === "array") {
    kind = "list";
    input = el("input", { id, type: "text", placeholder: "comma-separated" });
  } else if (field.format === "password" || field.writeOnly) {
    // Secrets are never pre-filled and never read back: the API does not return them.
    kind = "secret";
    input = el("input", { id, type: "password", autocomplete: "new-password", spellcheck: "false" });
  } else {
    input = el("input", { id, type: field.format === "date-time" ? "datetime-local" : "text", maxlength: field.maxLength, spellcheck: "false" });
    if (typeof defaultValue === "string" && field.format !== "date-time") input.value = defaultValue;
  }
  input.dataset.path = path;
  input.dataset.kind = kind;
  if (isRequired) input.required = true;
  const labelNode = el("label", { for: id, class: isRequired ? "required" : null, text: label(name, raw) });
  const hint = field.description || raw.description;
  return el("div", { class: "field", "data-field": path }, labelNode, input, hint ? el("span", { class: "hint", text: hint }) : null);
}

// Which generated fields a form shows for its current choices (a form per provider and
// credential type): hidden fields are not submitted.
const CREDENTIAL_FIELDS = {
  oauth2: ["access_token", "refresh_token"],
  api_key: ["api_key", "api_secret"],
  basic_auth: ["username", "password"],
  custom: ["access_token", "api_key", "api_secret", "username", "password"],
};
const CUSTOM_ENDPOINT_FIELDS = ["custom_scheme", "signature_header", "signature_encoding", "signature_prefix", "event_id_field", "event_type_field", "event_time_field", "record_id_field", "entity", "delete_event_types"];
const PROVIDER_ENDPOINT_FIELDS = { sendgrid: "sendgrid_public_key", salesforce: "salesforce_organization_id", hubspot: "hubspot_allow_legacy_signatures" };
const SECRETLESS_PROVIDERS = ["sendgrid", "salesforce"];

function credentialsShown(path, form, prefix) {
  const type = form.querySelector(`[data-path="${prefix}credential_type"]`);
  const name = path.slice(prefix.length);
  if (!type || !["access_token", "refresh_token", "api_key", "api_secret", "username", "password"].includes(name)) return true;
  return (CREDENTIAL_FIELDS[type.value] || []).includes(name);
}

function endpointShown(path, form) {
  const provider = form.querySelector('[data-path="provider"]').value;
  if (CUSTOM_ENDPOINT_FIELDS.includes(path)) return provider === "custom";
  const owner = Object.entries(PROVIDER_ENDPOINT_FIELDS).find(([, field]) => field === path);
  if (owner) return owner[0] === provider;
  if (path === "secret_key") return !SECRETLESS_PROVIDERS.includes(provider);
  return true;
}

function applyVisibility(form, shown) {
  const update = () => {
    for (const field of form.querySelectorAll("[data-field]")) field.hidden = !shown(field.dataset.field, form);
  };
  form.addEventListener("change", update);
  update();
}

function assign(target, path, value) {
  const parts = path.split(".");
  let node = target;
  for (const part of parts.slice(0, -1)) node = node[part] = node[part] || {};
  node[parts[parts.length - 1]] = value;
}

function collect(form) {
  const result = {};
  for (const input of form.querySelectorAll("[data-path]")) {
    if (input.closest("[hidden]")) continue;
    const { path, kind } = input.dataset;
    if (kind === "bool") {
      assign(result, path, input.checked);
      continue;
    }
    const text = input.value.trim();
    if (text === "") continue;
    if (kind === "number") assign(result, path, Number(text));
    else if (kind === "list") assign(result, path, text.split(",").map((s) => s.trim()).filter(Boolean));
    else if (kind === "map") {
      const map = {};
      for (const line of text.split("\n")) {
        const at = line.indexOf("=");
        if (at > 0) map[line.slice(0, at).trim()] = line.slice(at + 1).trim();
      }
      assign(result, path, map);
    } else if (kind === "secret") assign(result, path, input.value);
    else assign(result, path, text);
  }
  return result;
}

function showErrors(form, response) {
  for (const node of form.querySelectorAll(".field-error, .form-error")) node.remove();
  const error = (response.body && response.body.error) || { message: `HTTP ${response.status}`, details: {} };
  const fields = (error.details && error.details.fields) || [];
  let placed = 0;
  for (const item of fields) {
    const path = String(item.field || "");
    const candidates = [path, path.split(".").slice(0, -1).join("."), path.split(".")[0]].filter(Boolean);
    const holder = candidates.map((p) => form.querySelector(`[data-field="${CSS.escape(p)}"], [data-group="${CSS.escape(p)}"]`)).find(Boolean);
    if (holder) {
      holder.append(el("p", { class: "field-error", role: "alert", text: item.message || error.message }));
      placed += 1;
    }
  }
  const summary = placed && placed === fields.length ? error.message : [error.message, ...fields.filter(Boolean).map((f) => `${f.field}: ${f.message}`)].join(" — ");
  form.prepend(el("p", { class: "form-error", role: "alert", text: summary }));
}

// ------------------------------------------------------------------ views

function renderLogin(message) {
  nav.hidden = true;
  clear(main);
  const input = el("input", { id: "api-key", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const form = el(
    "form",
    {
      id: "login",
      onsubmit: async (event) => {
        event.preventDefault();
        sessionStorage.setItem(KEY, input.value.trim());
        try {
          const probe = await api("GET", "/api/dashboard/metrics");
          if (probe.ok) {
            location.hash = "#/";
            route();
          }
        } catch {
          // api() has shown the sign-in form again with its message.
        }
      },
    },
    el("h2", { text: "Sign in" }),
    message ? notice(message, true) : null,
    el("div", { class: "field" }, el("label", { for: "api-key", class: "required", text: "API key" }), input, el("span", { class: "hint", text: "Kept in this tab only (sessionStorage); sent only to this site as the Authorization header." })),
    el("button", { type: "submit", text: "Sign in" }),
  );
  put(main, form);
  input.focus();
}

async function renderOverview(token) {
  const [metrics, list, alerts] = await Promise.all([
    api("GET", "/api/dashboard/metrics"),
    api("GET", "/api/dashboard/integrations"),
    api("GET", "/api/dashboard/alerts?limit=100"),
  ]);
  if (token !== renderToken) return;
  clear(main);
  const m = metrics.body;
  const byHealth = Object.entries(m.integrations_by_health).map(([k, v]) => `${v} ${k}`).join(", ") || "none";
  const refused = Object.values(m.webhooks_24h.refused).reduce((a, b) => a + b, 0);
  put(main, 
    el("h2", { text: "Overview" }),
    el(
      "div",
      { class: "cards", id: "metrics" },
      card("Health score", m.health_score, "health-score"),
      card("Integrations", byHealth),
      card("Syncs, 24 h", `${m.syncs_24h.succeeded} ok · ${m.syncs_24h.failed} failed · ${m.syncs_24h.running} running`),
      card("Records, 24 h / 7 d", `${m.records_written_24h} / ${m.records_written_7d}`),
      card("Webhooks, 24 h", `${m.webhooks_24h.accepted} accepted · ${m.webhooks_24h.duplicate} dup · ${refused} refused`),
      card("Dead letters", m.dead_letters, "dead-letters"),
      card("Unresolved alerts", m.open_alerts, "open-alerts"),
    ),
    el("h2", { text: "Integrations" }),
  );
  const running = list.body.items.some((item) => item.running_sync_id);
  put(main, 
    table(
      ["Health", "Integration", { label: "Provider", narrow: true }, "Last sync", { label: "Next sync", narrow: true }, "Problem"],
      list.body.items.map((item) =>
        el(
          "tr",
          { "data-integration": item.integration_id },
          el("td", {}, badge(item.health.state, item.health.score)),
          el("td", {}, el("a", { href: `#/integration/${encodeURIComponent(item.integration_id)}`, class: "integration-name", text: item.integration_name })),
          el("td", { class: "hide-narrow", text: item.provider_name }),
          el("td", {}, item.running_sync_id ? "running…" : `${item.last_sync_status || "never"} ${item.last_sync_at ? when(item.last_sync_at) : ""}`),
          el("td", { class: "hide-narrow", text: item.next_sync_at ? when(item.next_sync_at) : "—" }),
          el("td", { class: item.last_error ? "error-text problem" : "problem", text: problem(item) }),
        ),
      ),
      { id: "integrations" },
    ),
  );
  put(main, el("h2", { text: "Unresolved alerts" }), alertTable(alerts.body.items.filter((a) => a.state !== "resolved")));
  schedule(running ? RUNNING_REFRESH_SECONDS : refreshSeconds, () => route());
}

function card(labelText, value, id) {
  const kind = typeof value === "number" ? "value" : "value text";
  return el("div", { class: "card", id }, el("div", { class: "label", text: labelText }), el("div", { class: kind, text: value }));
}

function problem(item) {
  if (item.last_sync_status === "failed" && item.last_error) return item.last_error;
  const worst = item.health.components.filter((c) => c.score !== null && c.score < 1).sort((a, b) => a.score * a.weight - b.score * b.weight)[0];
  return worst ? worst.detail : "";
}

function alertTable(items) {
  if (!items.length) return el("p", { class: "muted", id: "alerts-empty", text: "No alerts." });
  return table(
    ["Severity", "Alert", "State", "Opened", ""],
    items.map((alert) =>
      el(
        "tr",
        { "data-alert": alert.alert_id },
        el("td", {}, el("span", { class: `badge state-${alert.severity === "critical" ? "failing" : "degraded"}`, text: alert.severity })),
        el("td", { class: "alert-message", text: alert.message }),
        el("td", { class: "alert-state", text: alert.state }),
        el("td", { text: when(alert.opened_at) }),
        el(
          "td",
          {},
          alert.state === "open"
            ? el("button", {
                class: "secondary acknowledge",
                text: "Acknowledge",
                onclick: async (event) => {
                  event.target.disabled = true;
                  const response = await api("POST", `/api/dashboard/alerts/${encodeURIComponent(alert.alert_id)}/acknowledge`);
                  if (!response.ok) event.target.after(el("span", { class: "error-text", text: errorText(response) }));
                  route();
                },
              })
            : null,
        ),
      ),
    ),
    { id: "alerts" },
  );
}

async function renderIntegration(token, integrationId) {
  const response = await api("GET", `/api/dashboard/integration/${encodeURIComponent(integrationId)}`);
  if (token !== renderToken) return;
  clear(main);
  if (!response.ok) {
    put(main, notice(errorText(response), true));
    return;
  }
  const detail = response.body;
  const s = detail.summary;
  const feedback = el("div", { id: "action-result", "aria-live": "polite" });
  const act = (labelText, method, path, body, id) =>
    el("button", {
      id,
      text: labelText,
      class: "secondary",
      onclick: async (event) => {
        event.target.disabled = true;
        const result = await api(method, path, body);
        clear(feedback);
        put(feedback, result.ok ? notice(`${labelText}: done`) : notice(`${labelText}: ${errorText(result)}`, true));
        route();
      },
    });
  const base = `/api/integrations/${encodeURIComponent(integrationId)}`;
  put(main, 
    el("h2", {}, badge(s.health.state, s.health.score), " ", el("span", { id: "integration-title", text: s.integration_name })),
    el("p", { class: "muted", text: `${s.provider_name} · ${s.status} · ${s.sync_mode}, every ${duration(s.sync_frequency)} · next ${s.next_sync_at ? when(s.next_sync_at) : "not scheduled"}` }),
    s.last_error ? el("p", { class: "error-text", id: "last-error", text: s.last_error }) : null,
    el(
      "div",
      { class: "actions" },
      detail.running ? act("Cancel sync", "POST", `${base}/sync/cancel`, undefined, "cancel-sync") : act("Start sync", "POST", `${base}/sync`, undefined, "start-sync"),
      el("button", {
        id: "test-connection",
        class: "secondary",
        text: "Test connection",
        onclick: async () => {
          clear(feedback);
          put(feedback, connectionResult(await api("POST", `${base}/test-connection`)));
        },
      }),
      s.status === "paused" ? act("Resume", "PATCH", base, { status: "active" }, "resume") : act("Pause", "PATCH", base, { status: "paused" }, "pause"),
    ),
    feedback,
    progressView(detail),
    el("h3", { text: "Health" }),
    table(
      ["Component", "Score", "Weight", "Detail"],
      s.health.components.map((c) => el("tr", {}, el("td", { text: c.name }), el("td", { text: c.score === null ? "n/a" : Math.round(c.score * 100) }), el("td", { text: c.weight }), el("td", { text: c.detail }))),
      { id: "health-components" },
    ),
    s.health.time_to_data_loss_seconds !== null ? el("p", { id: "data-loss", class: s.health.time_to_data_loss_seconds < 72 * 3600 ? "error-text" : "muted", text: `Time to data loss: ${duration(Math.max(0, s.health.time_to_data_loss_seconds))}` }) : null,
    s.change_capture ? captureView(s.change_capture) : null,
    el("div", { class: "grid-2" }, el("div", {}, el("h3", { text: "Records per day" }), barChart(detail.days.map((d) => ({ label: d.day.slice(5), value: d.records_written })), "records-chart")), el("div", {}, el("h3", { text: "Sync durations" }), barChart(detail.recent_runs.slice().reverse().map((r) => ({ label: r.started_at.slice(5, 16), value: r.duration_seconds || 0, failed: r.status === "failed" })), "durations-chart"))),
    el("h3", { text: "Recent runs" }),
    table(
      ["Started", "Status", "Duration", "Written", { label: "Rejected", narrow: true }, "Error"],
      detail.recent_runs.map((r) => el("tr", {}, el("td", { text: when(r.started_at) }), el("td", { text: r.status }), el("td", { text: duration(r.duration_seconds) }), el("td", { text: r.records_written }), el("td", { class: "hide-narrow", text: r.records_rejected }), el("td", { class: "error-text", text: r.error || "" }))),
      { id: "runs" },
    ),
    el("h3", { text: "Entities" }),
    table(
      ["Entity", "Last success", "Records last run", "Records in all"],
      Object.entries(detail.entities).map(([name, e]) => el("tr", {}, el("td", { text: name }), el("td", { text: when(e.last_success_at) }), el("td", { text: e.records_last_run }), el("td", { text: e.records_total }))),
    ),
    detail.webhook_endpoint ? el("p", { id: "endpoint-counters", text: `Webhooks, 24 h: ${detail.webhook_endpoint.last_24h.accepted} accepted, ${detail.webhook_endpoint.last_24h.duplicate} duplicate, ${Object.values(detail.webhook_endpoint.last_24h.refused).reduce((a, b) => a + b, 0)} refused` }) : null,
    await settingsForms(integrationId, s),
  );
  schedule(detail.running ? RUNNING_REFRESH_SECONDS : refreshSeconds, () => route());
}

function progressView(detail) {
  const running = detail.running;
  const last = detail.recent_runs[0];
  let value = null;
  let text = "No sync yet";
  if (running) {
    value = running.percent === null ? null : running.percent;
    const eta = running.estimated_remaining_seconds === null ? "" : `, about ${duration(running.estimated_remaining_seconds)} left`;
    text = `Syncing: ${value === null ? `${running.records_read} records read` : `${value}%`}${eta}`;
  } else if (last) {
    value = last.status === "succeeded" ? 100 : null;
    text = `Last sync ${last.status}${value === 100 ? ": 100%" : ""}`;
  }
  const bar = el("progress", { id: "sync-progress", max: 100, "aria-label": "sync progress" });
  if (value !== null) bar.value = value;
  return el("div", { class: "progress" }, bar, el("span", { id: "sync-progress-text", text }));
}

function barChart(points, id) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const width = 600;
  const height = 150;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1, ...points.map((p) => p.value));
  const slot = width / Math.max(1, points.length);
  points.forEach((point, index) => {
    const h = Math.round((point.value / max) * (height - 20));
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("class", point.failed ? "bar failed" : "bar");
    rect.setAttribute("x", String(index * slot + 1));
    rect.setAttribute("y", String(height - 14 - h));
    rect.setAttribute("width", String(Math.max(1, slot - 2)));
    rect.setAttribute("height", String(h));
    const title = document.createElementNS(ns, "title");
    title.textContent = `${point.label}: ${point.value}`;
    rect.append(title);
    svg.append(rect);
  });
  const caption = document.createElementNS(ns, "text");
  caption.setAttribute("x", "2");
  caption.setAttribute("y", String(height - 2));
  caption.textContent = `max ${max}`;
  svg.append(caption);
  svg.setAttribute("aria-label", `${points.length} values, largest ${max}`);
  return el("div", { class: "chart", id }, svg);
}

function connectionResult(response) {
  if (!response.ok) return notice(`Connection test: ${errorText(response)}`, true);
  const check = response.body.check;
  if (!check) return notice(`Connection test: ${response.body.message}`, true);
  const lines = [`Connection test: ${check.status} — ${check.message}`, ...check.streams.map((s) => `${s.entity}: ${s.status}${s.message ? ` — ${s.message}` : ""}`)];
  return el("div", { class: check.ok ? "notice" : "notice bad", id: "connection-result", role: "status" }, lines.map((line) => el("div", { text: line })));
}

async function settingsForms(integrationId, summary) {
  await document_();
  const base = `/api/integrations/${encodeURIComponent(integrationId)}`;
  const syncForm = el("form", { id: "sync-settings" }, el("h3", { text: "Sync settings" }));
  put(syncForm, ...fieldsFor("SyncConfigurationPatch", "sync_config", { values: { "sync_config.sync_mode": summary.sync_mode, "sync_config.sync_frequency": summary.sync_frequency }, skip: ["sync_config.data_filters", "sync_config.field_mappings", "sync_config.last_sync_timestamp"] }).slice(0, 2), el("button", { type: "submit", text: "Save sync settings" }));
  syncForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await api("PATCH", base, collect(syncForm));
    if (!response.ok) showErrors(syncForm, response);
    else route();
  });
  const credentialsForm = el("form", { id: "credentials-form" }, el("h3", { text: "Replace credentials" }), el("p", { class: "muted", text: "Stored encrypted; the current ones are never shown." }), fieldsFor("IntegrationCredentials", "", { skip: ["token_expires_at"] }), el("button", { type: "submit", text: "Replace credentials" }));
  applyVisibility(credentialsForm, (path) => credentialsShown(path, credentialsForm, ""));
  credentialsForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await api("PUT", `${base}/credentials`, collect(credentialsForm));
    if (!response.ok) showErrors(credentialsForm, response);
    else {
      credentialsForm.reset();
      put(credentialsForm, notice("Credentials replaced."));
    }
  });
  return el("div", { class: "grid-2" }, syncForm, credentialsForm);
}

async function renderNew(token) {
  await document_();
  if (token !== renderToken) return;
  clear(main);
  const form = el("form", { id: "new-integration" }, el("h2", { text: "Register an integration" }));
  const result = el("div", { id: "new-result", "aria-live": "polite" });
  const testButton = el("button", {
    type: "button",
    id: "test-draft",
    class: "secondary",
    text: "Test the connection",
    onclick: async () => {
      clear(result);
      for (const node of form.querySelectorAll(".field-error, .form-error")) node.remove();
      const check = await api("POST", "/api/integrations/test-connection", collect(form));
      if (check.status === 422 || check.status === 403) showErrors(form, check);
      else put(result, connectionResult({ ok: check.ok, status: check.status, body: check.ok ? { check: check.body } : check.body }));
    },
  });
  put(
    form,
    ...fieldsFor("IntegrationCreateRequest", "", {
      skip: ["organization_id", "created_by", "rest_source", "source_options", "webhook_url", "credentials.token_expires_at", "sync_config.data_filters", "sync_config.field_mappings", "sync_config.last_sync_timestamp"],
    }),
    el("div", { class: "actions" }, testButton, el("button", { type: "submit", text: "Register" })),
  );
  applyVisibility(form, (path) => credentialsShown(path, form, "credentials."));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(result);
    const response = await api("POST", "/api/integrations", collect(form));
    if (!response.ok) {
      showErrors(form, response);
      return;
    }
    for (const node of form.querySelectorAll(".field-error, .form-error")) node.remove();
    const id = response.body.integration_id;
    put(result, notice(`Registered ${response.body.integration.integration_name}.`), el("a", { href: `#/integration/${encodeURIComponent(id)}`, id: "open-new", text: "Open the integration" }));
  });
  put(main, form, result);
}

async function renderAlerts(token) {
  const state = new URLSearchParams(location.hash.split("?")[1] || "").get("state") || "";
  const response = await api("GET", `/api/dashboard/alerts${state ? `?state=${encodeURIComponent(state)}` : ""}`);
  if (token !== renderToken) return;
  clear(main);
  const filter = el("select", { id: "alert-filter", "aria-label": "alert state", onchange: (event) => (location.hash = `#/alerts?state=${event.target.value}`) }, ["", "open", "acknowledged", "resolved"].map((s) => el("option", { value: s, text: s || "all" })));
  filter.value = state;
  put(main, el("h2", { text: "Alerts" }), filter, alertTable(response.body.items));
  schedule(refreshSeconds, () => route());
}

async function renderWebhooks(token) {
  const [endpoints, letters] = await Promise.all([api("GET", "/api/webhooks/endpoints"), api("GET", "/api/dlq")]);
  await document_();
  if (token !== renderToken) return;
  clear(main);
  const result = el("div", { id: "webhook-result", "aria-live": "polite" });
  put(main, 
    el("h2", { text: "Webhook endpoints" }),
    table(
      ["Provider", "URL path", "Status", "Secret", ""],
      endpoints.body.items.map((e) =>
        el("tr", { "data-endpoint": e.endpoint_id }, el("td", { text: e.provider }), el("td", { text: e.url_path }), el("td", { text: e.status }), el("td", { text: e.secret ? e.secret.current : "—" }), el("td", {}, rotateForm(e, result))),
      ),
    ),
    result,
    createEndpointForm(result),
    el("h2", { text: "Dead letters" }),
    letters.body.items.length
      ? table(
          ["Provider", "Event", "Error", "Failed"],
          letters.body.items.map((d) => el("tr", {}, el("td", { text: d.provider }), el("td", { text: `${d.event_type} ${d.event_id}` }), el("td", { class: "error-text", text: d.error }), el("td", { text: when(new Date(d.failed_at).toISOString()) }))),
          { id: "dead-letters-table" },
        )
      : el("p", { class: "muted", id: "no-dead-letters", text: "No dead letters." }),
    el("button", {
      id: "redrive",
      text: "Redrive dead letters",
      disabled: !letters.body.items.length,
      onclick: async () => {
        const response = await api("POST", "/api/dlq/redrive");
        clear(result);
        put(result, response.ok ? notice(`Redriven: ${response.body.redriven}`) : notice(errorText(response), true));
        setTimeout(route, 1500);
      },
    }),
  );
  schedule(refreshSeconds, () => route());
}

function newSecret() {
  const bytes = new Uint8Array(24);
  crypto.getRandomValues(bytes);
  return `whsec_${btoa(String.fromCharCode(...bytes))}`;
}

function createEndpointForm(result) {
  const fields = fieldsFor("WebhookEndpointCreateRequest", "", { skip: ["organization_id", "url_path", "integration_id", "field_mappings", "options"] });
  const providerFirst = [...fields.filter((f) => f.dataset.field === "provider"), ...fields.filter((f) => f.dataset.field !== "provider")];
  const form = el("form", { id: "new-endpoint" }, el("h3", { text: "Create an endpoint" }), providerFirst);
  applyVisibility(form, (path) => endpointShown(path, form));
  const secret = form.querySelector('[data-path="secret_key"]');
  put(form, 
    el("button", { type: "button", class: "secondary", text: "Generate a secret (custom provider)", onclick: () => (secret.value = newSecret()) }),
    " ",
    el("button", { type: "submit", text: "Create endpoint" }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = secret.value;
    const response = await api("POST", "/api/webhooks/endpoints", collect(form));
    if (!response.ok) return showErrors(form, response);
    clear(result);
    put(result, notice(`Created ${response.body.provider} endpoint at ${response.body.url_path}. Configure the provider with this secret now; it is never shown again:`), el("p", { class: "secret-once", text: chosen || "(the provider's own secret)" }));
    form.reset();
  });
  return form;
}

function rotateForm(endpoint, result) {
  return el("button", {
    class: "secondary",
    text: "Rotate secret",
    onclick: async () => {
      const secretKey = newSecret();
      const response = await api("POST", `/api/webhooks/endpoints/${encodeURIComponent(endpoint.endpoint_id)}/rotate-secret`, { secret_key: secretKey });
      clear(result);
      put(result, response.ok ? notice("New secret (shown once; the old one stays valid for a day):") : notice(errorText(response), true), response.ok ? el("p", { class: "secret-once", text: secretKey }) : null);
    },
  });
}

async function renderSettings(token) {
  const response = await api("GET", "/api/dashboard/alert-settings");
  await document_();
  if (token !== renderToken) return;
  clear(main);
  const current = response.body;
  const values = {};
  for (const [name, value] of Object.entries(current)) if (typeof value !== "object") values[name] = value;
  const form = el("form", { id: "alert-settings" }, el("h2", { text: "Alert settings" }), fieldsFor("AlertSettingsUpdate", "", { values }), el("p", { class: "muted", text: current.chat_webhook.configured ? `Chat webhook: ${current.chat_webhook.host} (leave empty to keep it)` : "No chat webhook." }), el("button", { type: "submit", text: "Save" }));
  const rules = form.querySelector('[data-path="enabled_rules"]');
  if (rules) rules.value = current.enabled_rules.join(", ");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const saved = await api("PUT", "/api/dashboard/alert-settings", collect(form));
    if (!saved.ok) showErrors(form, saved);
    else route();
  });
  put(main, form);
}

// ------------------------------------------------------------------ routing

async function route() {
  if (timer) clearTimeout(timer);
  if (!apiKey()) {
    renderLogin();
    return;
  }
  nav.hidden = false;
  const token = ++renderToken;
  const hash = location.hash || "#/";
  try {
    if (hash.startsWith("#/integration/")) await renderIntegration(token, decodeURIComponent(hash.slice("#/integration/".length)));
    else if (hash.startsWith("#/alerts")) await renderAlerts(token);
    else if (hash.startsWith("#/webhooks")) await renderWebhooks(token);
    else if (hash.startsWith("#/new")) await renderNew(token);
    else if (hash.startsWith("#/settings")) await renderSettings(token);
    else await renderOverview(token);
    document.body.dataset.rendered = String(token);
  } catch (error) {
    if (error.message !== "unauthorised") {
      clear(main);
      put(main, notice(`The dashboard could not load: ${error.message}`, true));
      schedule(refreshSeconds, () => route());
    }
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  renderLogin();
});
window.addEventListener("hashchange", route);
route();
