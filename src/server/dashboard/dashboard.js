/* The fleet dashboard: reads the admin API of fleetkey-server (the same answers fleetctl
 * prints, docs/server.md) and renders them in one synchronous pass once every answer is in,
 * then again every 10 s. Plain DOM, no framework. Every value from the fleet (device names,
 * audit subjects...) goes in with textContent, never as markup. */
"use strict";

const REFRESH_MS = 10000;
const EXPIRY_WARN_DAYS = 30;
const AUDIT_TAIL = 20;

async function getJson(path) {
    const r = await fetch(path, {credentials : "same-origin", cache : "no-store"});
    if (!r.ok) {
        let why = r.status + " " + r.statusText;
        try {
            why += ": " + (await r.json()).error;
        } catch (e) {
            /* not JSON: the status says enough */
        }
        throw new Error(path + ": " + why);
    }
    return r.json();
}

/* Everything the page shows, fetched in parallel; the plan's detail after the plan list. */
async function load() {
    const [devices, plans, audit] = await Promise.all([
        getJson("/api/devices?credentials=1"),
        getJson("/api/rotation"),
        getJson("/api/audit?tail=" + AUDIT_TAIL),
    ]);
    const list = plans.plans || [];
    const newest = list.length > 0 ? list[list.length - 1] : null;
    const plan =
        newest ? await getJson("/api/rotation/" + encodeURIComponent(newest.id) + "?devices=1")
               : null;
    return {devices : devices.devices || [], plan : plan, audit : audit.audit || []};
}

function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) {
        e.textContent = String(text);
    }
    if (cls) {
        e.className = cls;
    }
    return e;
}

function row(cells, cls) {
    const tr = document.createElement("tr");
    if (cls) {
        tr.className = cls;
    }
    for (const c of cells) {
        tr.appendChild(c instanceof Node ? c : el("td", c));
    }
    return tr;
}

function num(v) {
    return el("td", v, "num");
}

function setText(id, v) {
    document.getElementById(id).textContent = String(v);
}

/* RFC 3339 "2026-01-02T03:04:05Z" → milliseconds, or NaN. */
function when(s) {
    return s ? Date.parse(s) : NaN;
}

function daysLeft(ms, now) {
    return Math.floor((ms - now) / 86400000);
}

/* The active mtls certificate's expiry of a device (ms), NaN when it has none. */
function certExpiry(d) {
    let best = NaN;
    for (const c of d.credentials || []) {
        if (c.kind === "mtls_cert" && c.state === "active" && c.expires_at) {
            const t = when(c.expires_at);
            if (!(t >= best)) {
                best = t;
            }
        }
    }
    return best;
}

function postureCell(p) {
    const td = el("td");
    if (!p || typeof p !== "object") {
        td.textContent = "–";
        return td;
    }
    const rules = p.rules && typeof p.rules === "object" ? p.rules : {};
    const names = Object.keys(rules);
    const broken = names.filter((n) => rules[n] !== true);
    td.appendChild(el("span", (p.build || "?") + " "));
    td.appendChild(el("span", (names.length - broken.length) + "/" + names.length + " rules",
                      broken.length ? "bad" : "ok"));
    if (broken.length) {
        td.appendChild(el("span", " (" + broken.join(", ") + ")", "bad"));
    }
    if (p.nvs_encrypted === false) {
        td.appendChild(el("span", " nvs not encrypted", "bad"));
    }
    return td;
}

function renderDevices(devices, plan, now) {
    const rot = {};
    for (const t of (plan && plan.devices) || []) {
        rot[t.device] = t;
    }
    const classes = (plan && plan.classes) || [];
    const body = document.querySelector("#devices tbody");
    body.replaceChildren();
    let expiring = 0;
    for (const d of devices) {
        const active = (d.credentials || []).filter((c) => c.state === "active");
        const creds = active.map((c) => c.kind + " v" + c.version).join(", ");
        const exp = certExpiry(d);
        let expCell = el("td", "–");
        if (!isNaN(exp)) {
            const left = daysLeft(exp, now);
            if (left < EXPIRY_WARN_DAYS) {
                expiring++;
            }
            expCell = el("td", new Date(exp).toISOString().slice(0, 10) + " (" + left + " d)",
                         left < 0                  ? "bad"
                         : left < EXPIRY_WARN_DAYS ? "warn"
                                                   : "");
        }
        const t = rot[d.id];
        const rotText =
            t ? classes.map((c) => c + " " + t[c]).join(", ") + (t.offline ? " (offline)" : "")
              : "–";
        const tr = row(
            [
                el("td", d.id + (d.name ? " (" + d.name + ")" : "")),
                d.state,
                el("td", d.connected ? "yes" : "no", d.connected ? "ok" : "muted"),
                d.last_seen || "never",
                d.firmware_version || "–",
                creds || "–",
                expCell,
                postureCell(d.posture),
                rotText,
            ],
            "device");
        tr.dataset.id = d.id;
        tr.dataset.connected = d.connected ? "1" : "0";
        body.appendChild(tr);
    }
    setText("device-count", devices.length);
    setText("connected-count", devices.filter((d) => d.connected).length);
    setText("expiring-count", expiring);
}

function bar(w) {
    const b = el("div", null, "bar");
    for (const k of ["confirmed", "in_flight", "failed", "offline"]) {
        const n = k === "failed" ? w.failed + w.rolled_back : w[k];
        if (n > 0 && w.devices > 0) {
            const s = el("span", null, k);
            s.style.width = (100 * n / w.devices) + "%"; /* CSSOM: allowed by the page's CSP */
            s.title = k + ": " + n;
            b.appendChild(s);
        }
    }
    const td = el("td");
    td.appendChild(b);
    return td;
}

function renderPlan(plan) {
    const body = document.querySelector("#waves tbody");
    body.replaceChildren();
    if (!plan) {
        setText("plan-id", "");
        setText("plan-state", "");
        setText("plan-summary", "no rotation plan");
        setText("rotated-count", 0);
        return;
    }
    const k = plan.counts || {};
    setText("plan-id", plan.id);
    setText("plan-state", plan.state + (plan.forced ? " (forced)" : ""));
    let summary = (plan.classes || []).join(", ") + ": " + k.confirmed + " of " + k.devices +
                  " devices confirmed, " + k.in_flight + " in flight, " + k.offline + " offline, " +
                  (k.failed + k.rolled_back) + " failed";
    if (plan.pause_reason) {
        summary += "; paused: " + plan.pause_reason;
    }
    if (plan.blockers && plan.blockers.length) {
        summary += "; interlock held by " + plan.blockers.join(", ");
    }
    setText("plan-summary", summary);
    setText("rotated-count", k.confirmed);
    const covers = plan.waves || [];
    for (const w of plan.wave_progress || []) {
        const tr = row(
            [
                el("td", w.wave + (w.open ? "" : " (not open)")),
                el("td", covers[w.wave - 1] + " %"),
                num(w.devices),
                bar(w),
                num(w.confirmed),
                num(w.in_flight),
                num(w.pending),
                num(w.offline),
                num(w.failed + w.rolled_back),
            ],
            "wave");
        for (const f
                 of ["wave", "devices", "confirmed", "in_flight", "pending", "offline", "failed"]) {
            tr.dataset[f === "in_flight" ? "inFlight" : f] = String(w[f]);
        }
        body.appendChild(tr);
    }
}

function renderAudit(rows) {
    const body = document.querySelector("#audit tbody");
    body.replaceChildren();
    for (const a of rows) {
        const tr = row([ num(a.seq), a.at, a.actor, a.kind, a.subject ], "audit");
        tr.dataset.seq = String(a.seq);
        body.appendChild(tr);
    }
}

async function refresh() {
    try {
        const data = await load();
        const now = Date.now();
        renderPlan(data.plan);
        renderDevices(data.devices, data.plan, now);
        renderAudit(data.audit);
        setText("status", "updated " + new Date(now).toISOString().replace(".000", ""));
        document.body.dataset.ready = "1";
    } catch (e) {
        setText("status", "error: " + e.message);
        document.body.dataset.ready = "error";
    }
    setTimeout(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", refresh);
