// The direwolf web UI: logs a local account in, then calls the admin API (/api/v1) with the
// session cookie, sending the session's CSRF token with every change. No framework, no CDN.
"use strict";

let me = null;

const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) {
    node.append(child);
  }
  return node;
}

function say(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

async function api(method, path, body, type) {
  const headers = {};
  if (me && method !== "GET") {
    headers["X-CSRF-Token"] = me.csrf;
  }
  let payload;
  if (body instanceof Blob) {
    headers["Content-Type"] = type || "image/png";
    payload = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).error || message;
    } catch (_) {
      // not JSON
    }
    throw new Error(message);
  }
  return response.status === 204 ? null : response.json();
}

function fill(list, items, render, empty) {
  const ul = $(list);
  ul.replaceChildren();
  if (items.length === 0) {
    ul.append(el("li", { className: "empty", textContent: empty }));
  }
  for (const item of items) {
    ul.append(render(item));
  }
}

function when(seconds) {
  return new Date(seconds * 1000).toLocaleString();
}

function action(label, run, danger) {
  return el("button", {
    type: "button",
    textContent: label,
    className: danger ? "danger" : "",
    onclick: () => run().catch((e) => say(e.message, true)),
  });
}

async function refresh() {
  const [pending, pairings, apps, sessions] = await Promise.all([
    api("GET", "/api/v1/pending-pairings"),
    api("GET", "/api/v1/pairings"),
    api("GET", "/api/v1/apps"),
    api("GET", "/api/v1/sessions"),
  ]);
  fill("pending", pending, (p) => {
    const id = "pin-" + p.secret;
    const device = p.device_name || "a device";
    const form = el("form", {},
      el("label", { htmlFor: id, textContent: "PIN for " + device }),
      el("input", { id, name: "pin", inputMode: "numeric", pattern: "[0-9]{4}", required: true, autocomplete: "off" }),
      el("button", { type: "submit", textContent: "Pair" }));
    form.onsubmit = (event) => {
      event.preventDefault();
      const pin = form.elements.pin.value.trim();
      api("POST", "/api/v1/pending-pairings/" + encodeURIComponent(p.secret) + "/approve", { pin, user: me.user })
        .then(() => { say("PIN sent: " + device + " is pairing."); return refresh(); })
        .catch((e) => say(e.message, true));
    };
    return el("li", {}, el("p", { textContent: device + " at " + p.client_ip + ", since " + when(p.opened_at) }), form);
  }, "No device is waiting for a PIN.");
  const mine = pairings.filter((p) => p.user === me.user);
  // Revoke, and with the box ticked also end the sessions the device started.
  const revoke = (p, list) => {
    const id = list + "-end-" + p.fingerprint;
    const end = el("input", { id, type: "checkbox" });
    const button = action("Revoke", async () => {
      const query = end.checked ? "?stop_sessions=true" : "";
      await api("DELETE", "/api/v1/pairings/" + encodeURIComponent(p.fingerprint) + query);
      say("Revoked " + (p.device_name || p.fingerprint) + (end.checked ? " and ended its session." : "."));
      await refresh();
    }, true);
    return [el("label", { htmlFor: id, className: "check" }, end, " Also end its running session"), button];
  };
  fill("devices", mine, (p) => el("li", {},
    el("p", { textContent: (p.device_name || "Unnamed device") + ", paired " + when(p.paired_at) }),
    ...revoke(p, "devices")), "No paired device.");
  const appItem = (a, extra) => el("li", {},
    ...(a.has_image ? [el("img", { src: "/api/v1/apps/" + a.id + "/image", alt: "" })] : []),
    el("p", { textContent: a.title + " (id " + a.id + ")" }), ...extra);
  fill("apps", apps, (a) => appItem(a, []), "No app.");
  const sessionText = (s) => "App " + s.app + " at " + s.mode + ", " + s.phase + (s.host ? " on " + s.host : "");
  fill("my-sessions", sessions.filter((s) => s.user === me.user),
    (s) => el("li", { textContent: sessionText(s) }), "No running session.");
  if (!me.admin) {
    return;
  }
  const users = await api("GET", "/api/v1/users");
  fill("users", users, (u) => {
    const id = "password-" + u.name;
    const form = el("form", {},
      el("label", { htmlFor: id, textContent: "New password for " + u.name }),
      el("input", { id, name: "password", type: "password", minLength: 8, required: true, autocomplete: "new-password" }),
      el("button", { type: "submit", textContent: "Set password" }));
    form.onsubmit = (event) => {
      event.preventDefault();
      api("PUT", "/api/v1/users/" + encodeURIComponent(u.name) + "/password", { password: form.elements.password.value })
        .then(() => { say("Password set for " + u.name + "."); return refresh(); })
        .catch((e) => say(e.message, true));
    };
    return el("li", {},
      el("p", { textContent: u.name + (u.admin ? " (administrator)" : "") + (u.has_password ? "" : ", no password") }),
      form,
      action("Remove " + u.name, async () => {
        await api("DELETE", "/api/v1/users/" + encodeURIComponent(u.name));
        say("Removed " + u.name + ".");
        await refresh();
      }, true));
  }, "No user.");
  fill("admin-apps", apps, (a) => appItem(a, [action("Remove " + a.title, async () => {
    await api("DELETE", "/api/v1/apps/" + a.id);
    say("Removed " + a.title + ".");
    await refresh();
  }, true)]), "No app.");
  fill("pairings", pairings, (p) => el("li", {},
    el("p", { textContent: (p.device_name || "Unnamed device") + " of " + p.user + ", paired " + when(p.paired_at) }),
    ...revoke(p, "pairings")), "No pairing.");
  fill("sessions", sessions, (s) => el("li", {},
    el("p", { textContent: s.user + ": " + sessionText(s) }),
    action("Stop", async () => {
      await api("DELETE", "/api/v1/sessions/" + encodeURIComponent(s.id));
      say("Stopped the session of " + s.user + ".");
      await refresh();
    }, true)), "No session.");
}

function show() {
  const logged = me !== null;
  $("login").hidden = logged;
  $("person").hidden = !logged;
  $("admin").hidden = !(logged && me.admin);
  $("logout").hidden = !logged;
  $("who").hidden = !logged;
  $("who").textContent = logged ? "Logged in as " + me.user + (me.admin ? " (administrator)" : "") : "";
}

async function start() {
  $("login-form").onsubmit = async (event) => {
    event.preventDefault();
    const form = event.target;
    try {
      me = await api("POST", "/ui/login", { user: form.elements.user.value, password: form.elements.password.value });
      form.reset();
      show();
      say("Welcome, " + me.user + ".");
      await refresh();
    } catch (e) {
      say(e.message, true);
    }
  };
  $("logout").onclick = async () => {
    const out = await api("POST", "/ui/logout").catch(() => null);
    if (out && out.sign_out) {
      // Logged in by the login proxy: signed out there too, or its next request logs in again.
      location.assign(out.sign_out);
      return;
    }
    me = null;
    show();
    say("Logged out.");
  };
  $("user-form").onsubmit = async (event) => {
    event.preventDefault();
    const form = event.target;
    try {
      await api("POST", "/api/v1/users", { name: form.elements.name.value.trim() });
      say("Added " + form.elements.name.value.trim() + ".");
      form.reset();
      await refresh();
    } catch (e) {
      say(e.message, true);
    }
  };
  $("app-form").onsubmit = async (event) => {
    event.preventDefault();
    const form = event.target;
    try {
      const app = await api("POST", "/api/v1/apps", { title: form.elements.title.value });
      const file = form.elements.image.files[0];
      if (file) {
        await api("PUT", "/api/v1/apps/" + app.id + "/image", file, "image/png");
      }
      say("Added " + app.title + (file ? " with its image." : "."));
      form.reset();
      await refresh();
    } catch (e) {
      say(e.message, true);
    }
  };
  try {
    me = await api("GET", "/ui/session");
  } catch (_) {
    me = null;
  }
  if (!me) {
    const options = await api("GET", "/ui/login-options").catch(() => ({}));
    $("sso").hidden = !options.single_sign_on;
  }
  show();
  if (me) {
    await refresh().catch((e) => say(e.message, true));
  }
  // New pending pairings appear by themselves; not while someone types.
  setInterval(() => {
    if (me && !(document.activeElement instanceof HTMLInputElement)) {
      refresh().catch((e) => say(e.message, true));
    }
  }, 5000);
}

start();
