/*
 * The hub's web chat widget: one <script> tag on a site's pages, no dependencies, no build step.
 * Protocol: docs/channels/webchat.md (POST /webhooks/webchat, GET /webhooks/webchat/messages).
 *
 *   <script src="https://HUB/webchat/widget.js" data-site-id="shop" async></script>
 *
 * Attributes: data-site-id (required), data-lang ("de" | "en"; default: the browser's language),
 * data-external-id / data-email / data-phone / data-name (the visitor's identity claims),
 * data-user-hash (the site's backend signs the first of external id, email, phone),
 * data-open ("true": open the panel on load).
 */
(function () {
  "use strict";

  var script = document.currentScript || document.querySelector('script[src*="/webchat/widget.js"][data-site-id]');
  if (!script || window.__hubWebchatLoaded) return;
  window.__hubWebchatLoaded = true;

  var data = script.dataset;
  var SITE = (data.siteId || "").trim();
  var ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
  if (!ID_RE.test(SITE)) {
    console.error("hub web chat: data-site-id is missing or not a valid site id");
    return;
  }
  // The hub's base URL: where this script came from, stage prefixes (/api/...) included.
  var BASE = script.src.replace(/\/webchat\/widget\.js(?:[?#].*)?$/, "");
  var POLL_OPEN_MS = 3000, POLL_CLOSED_MS = 15000, POLL_HIDDEN_MS = 60000;
  var RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 16000, 30000];
  // Longer than a tab's own retries take: a message still pending then has no tab sending it.
  var ORPHAN_MS = 90000;
  var SESSION_IDLE_MS = 24 * 3600 * 1000;
  var KEPT_MESSAGES = 200;

  var STRINGS = {
    en: {
      open: "Open chat", close: "Close chat", title: "Chat with us", log: "Conversation",
      label: "Your message", placeholder: "Write a message…", send: "Send",
      attach: "Add a link", attachLabel: "Link to a file (https://…)", attachInvalid: "Enter a link that starts with https:// or http://",
      sending: "Sending…", sent: "Sent", failed: "Not sent.", retry: "Send again",
      empty: "Ask us anything. We usually answer within a few minutes.",
      you: "You", agent: "Support", newReply: "New reply", unread: "unread replies",
      rejected: "The message was refused: ", offline: "No connection. We keep trying…",
    },
    de: {
      open: "Chat öffnen", close: "Chat schließen", title: "Schreiben Sie uns", log: "Unterhaltung",
      label: "Ihre Nachricht", placeholder: "Nachricht schreiben…", send: "Senden",
      attach: "Link anhängen", attachLabel: "Link zu einer Datei (https://…)", attachInvalid: "Bitte einen Link mit https:// oder http:// eingeben",
      sending: "Wird gesendet…", sent: "Gesendet", failed: "Nicht gesendet.", retry: "Erneut senden",
      empty: "Fragen Sie uns gern. Wir antworten meist innerhalb weniger Minuten.",
      you: "Sie", agent: "Support", newReply: "Neue Antwort", unread: "ungelesene Antworten",
      rejected: "Die Nachricht wurde abgelehnt: ", offline: "Keine Verbindung. Wir versuchen es weiter…",
    },
  };
  var lang = (data.lang || navigator.language || "en").toLowerCase().slice(0, 2);
  var T = STRINGS[lang] || STRINGS.en;

  // --- identity and storage ------------------------------------------------------------------

  var identity = {};
  ["externalId", "email", "phone", "name"].forEach(function (key) {
    var value = data[key];
    if (value && value.trim()) identity[key.replace("externalId", "external_id")] = value;
  });
  var userHash = (data.userHash || "").trim();
  // The claim user_hash signs; a different signed-in person never sees the previous one's chat.
  var claim = identity.external_id || identity.email || identity.phone || "";

  function randomId(prefix) {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return prefix + Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  var KEY = "hub-webchat:" + BASE + ":" + SITE;
  var state = load();

  function fresh() {
    return { visitorId: randomId("v-"), sessionId: randomId("s-"), token: null, after: null, claim: claim,
             messages: [], lastActive: Date.now(), open: false };
  }

  function read() {
    try { return JSON.parse(localStorage.getItem(KEY) || "null"); } catch (e) { return null; }
  }

  function load() {
    var saved = read();
    if (!saved || !ID_RE.test(saved.visitorId || "") || !Array.isArray(saved.messages)) return fresh();
    // Signed out, or someone else signed in: that person's conversation is not shown here.
    if (saved.claim && saved.claim !== claim) return fresh();
    if (claim && !saved.claim) saved.claim = claim;
    if (Date.now() - (saved.lastActive || 0) > SESSION_IDLE_MS) saved.sessionId = randomId("s-");
    return saved;
  }

  function save() {
    // Another tab of the site may have written since this one last read: keep what it added.
    absorb(read());
    state.messages = state.messages.slice(-KEPT_MESSAGES);
    try { localStorage.setItem(KEY, JSON.stringify(state)); } catch (e) { /* private mode: this page only */ }
  }

  // --- several tabs of one site share one conversation -------------------------------------------

  var owned = {};     // ids of the messages this tab delivers: its copy of them is the one that counts
  var revoked = null; // the token the hub refused here, never taken back from another tab

  function absorb(other) {
    if (!other || !Array.isArray(other.messages) || (other.claim || "") !== (state.claim || "")) return;
    if (other.visitorId !== state.visitorId) {
      // Two tabs that both started fresh: the one that has said nothing yet joins the other.
      if (state.messages.length || !ID_RE.test(other.visitorId || "")) return;
      state.visitorId = other.visitorId;
      state.sessionId = other.sessionId;
      state.token = null; // taken below, like any token another tab found
    }
    var byId = {}, added = [], changed = [], previous = null;
    state.messages.forEach(function (m) { byId[m.id] = m; });
    other.messages.forEach(function (theirs) {
      var mine = byId[theirs.id];
      if (!mine) {
        // In the other tab's order: after the message that precedes it there.
        state.messages.splice(previous ? state.messages.indexOf(byId[previous]) + 1 : 0, 0, theirs);
        byId[theirs.id] = theirs;
        added.push(theirs);
      } else if (theirs.state !== mine.state && mine.state !== "sent" && (theirs.state === "sent" || !owned[mine.id])) {
        Object.keys(theirs).forEach(function (key) { mine[key] = theirs[key]; });
        changed.push(mine);
      }
      previous = theirs.id;
    });
    if (other.after && (!state.after || other.after > state.after)) state.after = other.after;
    var tokenArrived = !state.token && other.token && other.token !== revoked;
    if (tokenArrived) state.token = other.token;
    state.lastActive = Math.max(state.lastActive || 0, other.lastActive || 0);
    if (!added.length && !changed.length && !tokenArrived) return;
    var tail = state.messages.slice(state.messages.length - added.length);
    if (added.every(function (m, i) { return tail[i] === m; })) added.forEach(appendMessage); else render();
    changed.forEach(updateMessage);
    added.forEach(function (m) { if (m.dir === "in" && !state.open) unread += 1; });
    renderLauncher();
    if (tokenArrived) schedulePoll(0);
  }

  window.addEventListener("storage", function (event) {
    if (event.key !== KEY || !event.newValue) return;
    var other;
    try { other = JSON.parse(event.newValue); } catch (e) { return; /* not a state this widget wrote */ }
    absorb(other);
  });

  // --- the DOM, inside a shadow root so the site's CSS cannot reach it ---------------------------

  var host = document.createElement("div");
  host.setAttribute("data-hub-webchat", SITE);
  host.setAttribute("lang", STRINGS[lang] ? lang : "en"); // screen readers pronounce the strings in it
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML =
    "<style>" +
    ":host{all:initial;position:fixed;right:20px;bottom:20px;z-index:2147483000;font:15px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1b1f24}" +
    "*{box-sizing:border-box;font:inherit}" +
    "button{cursor:pointer;border:0;border-radius:8px;padding:8px 12px;background:#1f5fbf;color:#fff}" +
    "button:focus-visible,textarea:focus-visible,input:focus-visible,a:focus-visible{outline:3px solid #f5a623;outline-offset:2px}" +
    ".launcher{border-radius:28px;padding:14px 20px;box-shadow:0 4px 14px rgba(0,0,0,.25);font-weight:600;float:right}" +
    ".badge{display:inline-block;min-width:1.4em;margin-left:6px;border-radius:10px;background:#d93025;padding:0 6px;font-size:12px}" +
    ".panel{width:min(360px,calc(100vw - 40px));height:min(520px,calc(100vh - 100px));margin-bottom:12px;background:#fff;border:1px solid #c9d1d9;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.2);display:flex;flex-direction:column;overflow:hidden}" +
    ".panel[hidden]{display:none}" +
    "header{display:flex;align-items:center;justify-content:space-between;padding:10px 14px;background:#1f5fbf;color:#fff}" +
    "h2{margin:0;font-size:16px;font-weight:600}" +
    "header button{background:transparent;font-size:20px;line-height:1;padding:4px 8px}" +
    ".log{flex:1;overflow-y:auto;padding:12px;margin:0;list-style:none;background:#f6f8fa}" +
    ".msg{max-width:85%;margin:6px 0;padding:8px 10px;border-radius:10px;white-space:pre-wrap;word-wrap:break-word}" +
    ".in{background:#fff;border:1px solid #d0d7de}" +
    ".out{margin-left:auto;background:#dbe9ff}" +
    ".who{position:absolute;left:-9999px}" +
    ".meta{display:block;font-size:12px;color:#57606a;margin-top:2px}" +
    ".meta button{padding:2px 8px;margin-left:6px;font-size:12px}" +
    ".empty{color:#57606a;text-align:center;margin-top:40px}" +
    "a{color:#0b4dad}" +
    "form{border-top:1px solid #d0d7de;padding:8px;display:flex;flex-direction:column;gap:6px}" +
    "label{font-size:13px;color:#424a53}" +
    "textarea,input{width:100%;border:1px solid #8c959f;border-radius:6px;padding:6px 8px;resize:none;color:#1b1f24;background:#fff}" +
    ".row{display:flex;gap:6px;justify-content:space-between}" +
    ".secondary{background:#eaeef2;color:#1b1f24}" +
    ".error{color:#b3261e;font-size:13px;margin:0}" +
    "</style>" +
    '<section class="panel" id="panel" role="dialog" aria-labelledby="title" hidden>' +
    '<header><h2 id="title"></h2><button type="button" class="close" id="close"><span aria-hidden="true">×</span></button></header>' +
    '<ol class="log" id="log" role="log" aria-live="polite" aria-relevant="additions"></ol>' +
    '<form id="form" novalidate>' +
    '<label for="text" id="text-label"></label>' +
    '<textarea id="text" rows="2" maxlength="10000"></textarea>' +
    '<div id="attach-row" hidden><label for="url" id="url-label"></label><input id="url" type="url" inputmode="url" maxlength="2048"></div>' +
    '<p class="error" id="error" role="alert"></p>' +
    '<div class="row"><button type="button" class="secondary" id="attach" aria-controls="attach-row" aria-expanded="false"></button>' +
    '<button type="submit" id="send"></button></div>' +
    "</form></section>" +
    '<button type="button" class="launcher" id="launcher" aria-controls="panel" aria-expanded="false"></button>';

  function $(id) { return root.getElementById(id); }
  var panel = $("panel"), log = $("log"), form = $("form"), text = $("text"), url = $("url"), error = $("error");
  var launcher = $("launcher"), closeButton = $("close"), attachButton = $("attach"), attachRow = $("attach-row");
  $("title").textContent = T.title;
  log.setAttribute("aria-label", T.log);
  closeButton.setAttribute("aria-label", T.close);
  $("text-label").textContent = T.label;
  text.placeholder = T.placeholder;
  $("url-label").textContent = T.attachLabel;
  attachButton.textContent = T.attach;
  $("send").textContent = T.send;
  var unread = 0;

  function renderLauncher() {
    launcher.textContent = state.open ? T.close : T.open;
    launcher.setAttribute("aria-expanded", String(!!state.open));
    if (unread && !state.open) {
      var badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = String(unread);
      badge.setAttribute("aria-label", unread + " " + T.unread);
      launcher.appendChild(badge);
    }
  }

  function linkTo(attachment) {
    var a = document.createElement("a");
    // Only http(s): a reply's link must never run script in the visitor's page.
    if (/^https?:\/\//i.test(attachment.url)) a.href = attachment.url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    a.textContent = attachment.filename || attachment.url;
    return a;
  }

  function renderMessage(message) {
    var item = document.createElement("li");
    item.className = "msg " + (message.dir === "out" ? "out" : "in");
    item.setAttribute("data-id", message.id);
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = (message.dir === "out" ? T.you : T.agent) + ": ";
    item.appendChild(who);
    if (message.subject) {
      var subject = document.createElement("strong");
      subject.textContent = message.subject + "\n";
      item.appendChild(subject);
    }
    if (message.text) item.appendChild(document.createTextNode(message.text));
    (message.attachments || []).forEach(function (attachment) {
      item.appendChild(document.createElement("br"));
      item.appendChild(linkTo(attachment));
    });
    if (message.dir === "out") {
      var meta = document.createElement("span");
      meta.className = "meta";
      if (message.state === "failed") {
        meta.textContent = T.failed + (message.reason ? " " + T.rejected + message.reason : "");
        var retry = document.createElement("button");
        retry.type = "button";
        retry.className = "secondary";
        retry.textContent = T.retry;
        retry.addEventListener("click", function () {
          // Owned before the save, so the stored "failed" copy does not win the merge back.
          owned[message.id] = true;
          message.state = "pending"; message.attempt = 0; message.reason = null;
          save(); updateMessage(message); deliver(message);
        });
        meta.appendChild(retry);
      } else {
        meta.textContent = message.state === "sent" ? T.sent : message.offline ? T.offline : T.sending;
      }
      item.appendChild(meta);
    }
    return item;
  }

  function render() {
    log.textContent = "";
    if (!state.messages.length) {
      var empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = T.empty;
      log.appendChild(empty);
    }
    state.messages.forEach(function (message) { log.appendChild(renderMessage(message)); });
    log.scrollTop = log.scrollHeight;
    renderLauncher();
  }

  function updateMessage(message) {
    var old = log.querySelector('[data-id="' + CSS.escape(message.id) + '"]');
    if (old) old.replaceWith(renderMessage(message)); else render();
  }

  function appendMessage(message) {
    if (log.querySelector('[data-id="' + CSS.escape(message.id) + '"]')) return updateMessage(message);
    var empty = log.querySelector(".empty");
    if (empty) empty.remove();
    log.appendChild(renderMessage(message));
    log.scrollTop = log.scrollHeight;
  }

  function setOpen(open, focus) {
    state.open = open;
    panel.hidden = !open;
    if (open) unread = 0;
    save();
    renderLauncher();
    if (open) {
      log.scrollTop = log.scrollHeight;
      if (focus) text.focus();
    } else if (focus) {
      launcher.focus();
    }
    schedulePoll(0);
  }

  launcher.addEventListener("click", function () { setOpen(!state.open, true); });
  closeButton.addEventListener("click", function () { setOpen(false, true); });
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { event.preventDefault(); setOpen(false, true); }
  });
  attachButton.addEventListener("click", function () {
    var show = attachRow.hidden;
    attachRow.hidden = !show;
    attachButton.setAttribute("aria-expanded", String(show));
    if (show) url.focus(); else url.value = "";
  });
  text.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit ? form.requestSubmit() : submit(event);
    }
  });
  form.addEventListener("submit", submit);

  function submit(event) {
    event.preventDefault();
    error.textContent = "";
    var body = text.value.trim();
    var link = url.value.trim();
    if (link && !/^https?:\/\/[^\/\s]+/i.test(link)) {
      error.textContent = T.attachInvalid;
      url.focus();
      return;
    }
    if (!body && !link) { text.focus(); return; }
    var message = { id: randomId("m-"), dir: "out", text: body || null, attachments: link ? [{ url: link }] : [],
                    sentAt: new Date().toISOString(), state: "pending", attempt: 0 };
    state.messages.push(message);
    state.lastActive = Date.now();
    save();
    text.value = "";
    url.value = "";
    attachRow.hidden = true;
    attachButton.setAttribute("aria-expanded", "false");
    appendMessage(message);
    text.focus();
    deliver(message);
  }

  // --- sending: retried with backoff under the same message_id (the hub's dedupe key) -------------

  var inFlight = {};

  function deliver(message) {
    if (inFlight[message.id]) return;
    inFlight[message.id] = true;
    owned[message.id] = true;
    var payload = { site_id: SITE, visitor_id: state.visitorId, message_id: message.id, session_id: state.sessionId,
                    sent_at: message.sentAt };
    if (message.text) payload.text = message.text;
    if (message.attachments.length) payload.attachments = message.attachments;
    if (claim || identity.name) payload.identity = identity;
    if (userHash) payload.user_hash = userHash;
    fetch(BASE + "/webhooks/webchat", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload),
      credentials: "omit", mode: "cors",
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (answer) {
        delete inFlight[message.id];
        if (response.status === 202) {
          message.state = "sent";
          message.offline = false;
          if (answer.visitor_token) state.token = answer.visitor_token;
          save();
          updateMessage(message);
          schedulePoll(0);
        } else if (response.status >= 500 || response.status === 429) {
          retryLater(message);
        } else {
          message.state = "failed";
          message.reason = (answer.error && answer.error.message) || "HTTP " + response.status;
          save();
          updateMessage(message);
        }
      });
    }, function () {
      delete inFlight[message.id];
      message.offline = true;
      retryLater(message);
    });
  }

  function retryLater(message) {
    var delay = RETRY_DELAYS_MS[message.attempt];
    if (delay === undefined) {
      message.state = "failed";
      save();
      updateMessage(message);
      return;
    }
    message.attempt += 1;
    save();
    updateMessage(message);
    // Jitter: many visitors' widgets must not retry in lockstep after an outage.
    setTimeout(function () { deliver(message); }, delay * (0.75 + Math.random() / 2));
  }

  // --- replies: polled from the visitor's outbox with the visitor token ----------------------------

  var pollTimer = null, polling = false;

  function pollDelay() {
    if (document.hidden) return POLL_HIDDEN_MS;
    return state.open ? POLL_OPEN_MS : POLL_CLOSED_MS;
  }

  function schedulePoll(delay) {
    clearTimeout(pollTimer);
    if (!state.token) return;
    pollTimer = setTimeout(poll, delay === undefined ? pollDelay() : delay);
  }

  function adoptOrphans() {
    // A message another tab was sending and never settled (the tab closed): sent from here, under
    // its message_id, so the hub still stores it once.
    state.messages.forEach(function (m) {
      if (m.dir === "out" && m.state === "pending" && !owned[m.id] && Date.now() - Date.parse(m.sentAt) > ORPHAN_MS) {
        m.attempt = 0;
        deliver(m);
      }
    });
  }

  function poll() {
    adoptOrphans();
    if (polling || !state.token) return;
    polling = true;
    var query = "site_id=" + encodeURIComponent(SITE) + "&visitor_id=" + encodeURIComponent(state.visitorId) +
                (state.after ? "&after=" + encodeURIComponent(state.after) : "");
    fetch(BASE + "/webhooks/webchat/messages?" + query, {
      headers: { Authorization: "Bearer " + state.token }, credentials: "omit", mode: "cors",
    }).then(function (response) {
      if (response.status === 401) {
        revoked = state.token;
        state.token = null; // the next message the visitor sends brings a fresh token
        save();
        return null;
      }
      return response.ok ? response.json() : null;
    }).then(function (answer) {
      if (answer && Array.isArray(answer.data)) received(answer.data);
    }, function () { /* offline: the next poll tries again */ }).then(function () {
      polling = false;
      schedulePoll();
    });
  }

  function received(replies) {
    var known = {};
    state.messages.forEach(function (m) { known[m.id] = true; });
    replies.forEach(function (reply) {
      state.after = reply.id;
      if (known[reply.id]) return;
      var message = { id: reply.id, dir: "in", text: reply.text, subject: reply.subject,
                      attachments: reply.attachments || [], sentAt: reply.sent_at };
      state.messages.push(message);
      appendMessage(message);
      if (!state.open) unread += 1;
    });
    if (replies.length) {
      save();
      renderLauncher();
    }
  }

  document.addEventListener("visibilitychange", function () { schedulePoll(document.hidden ? undefined : 0); });

  function start() {
    document.body.appendChild(host);
    panel.hidden = !state.open;
    render();
    state.messages.forEach(function (m) { if (m.dir === "out" && m.state === "pending") deliver(m); });
    if (data.open === "true" && !state.open) setOpen(true, false);
    schedulePoll(0);
  }

  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
