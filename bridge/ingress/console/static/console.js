// The status page's live refresh, message look-up and cancel/retry buttons. The server renders
// every piece of HTML (bridge/ingress/console/page.py); this only fetches it again.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var found = document.getElementById("found");
  var updated = document.getElementById("updated");
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var every = 1000 * Number(document.querySelector('meta[name="refresh-seconds"]').content);
  var busy = false;

  function say(text, bad) {
    updated.textContent = text;
    updated.className = bad ? "bad" : "muted";
  }

  function loggedOut(response) {
    if (response.status === 401) {
      window.location.assign("/admin/login");
      return true;
    }
    return false;
  }

  function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    fetch("/admin/live", {credentials: "same-origin", cache: "no-store"})
      .then(function (response) {
        if (loggedOut(response)) return null;
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        if (html === null) return;
        live.innerHTML = html;
        // UTC, as the page's timelines are
        say("updated " + new Date().toISOString().slice(11, 19) + "Z", false);
      })
      .catch(function (error) { say("refresh failed: " + error.message, true); })
      .then(function () { busy = false; });
  }

  // The message's panel, fetched and put in place; a promise that settles once it is there.
  function show(id) {
    if (!id) return Promise.resolve();
    return fetch("/admin/found?id=" + encodeURIComponent(id), {credentials: "same-origin"})
      .then(function (response) {
        if (loggedOut(response)) return null;
        return response.text();
      })
      .then(function (html) {
        if (html === null) return;
        found.innerHTML = html;
        history.replaceState(null, "", "/?id=" + encodeURIComponent(id));
      })
      .catch(function (error) { found.textContent = "look-up failed: " + error.message; });
  }

  function act(button) {
    var action = button.getAttribute("data-action");
    var id = button.getAttribute("data-id");
    button.disabled = true;
    fetch("/admin/api/messages/" + action, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify({ids: [id]})
    })
      .then(function (response) {
        if (loggedOut(response)) return null;
        return response.json();
      })
      .then(function (answer) {
        if (answer === null) return;
        var outcome = answer.results ? answer.results[0] : null;
        var text = outcome ? outcome.detail : (answer.error || "no answer");
        show(id).then(function () {
          var note = document.getElementById("action-result");
          if (note) note.textContent = text;
        });
        refresh();
      })
      .catch(function (error) { button.disabled = false; say(action + " failed: " + error.message, true); });
  }

  document.getElementById("find-form").addEventListener("submit", function (event) {
    event.preventDefault();
    show(document.getElementById("find-id").value.trim());
  });
  document.addEventListener("click", function (event) {
    var target = event.target;
    var button = target.closest ? target.closest("button[data-action]") : null;
    if (button) {
      act(button);
      return;
    }
    var link = target.closest ? target.closest("a.mid") : null;
    if (link) {
      event.preventDefault();
      document.getElementById("find-id").value = link.textContent;
      show(link.textContent);
    }
  });
  document.addEventListener("visibilitychange", refresh);
  window.setInterval(refresh, every);
})();
