// The dashboard's live part. teal renders it (the same HTML the page loads
// with) and sends it again over server-sent events whenever it changes, at
// least once a second; this only swaps it in. EventSource reconnects by itself.
"use strict";

const live = document.getElementById("live");
const connection = document.getElementById("connection");

function show(text, className) {
  connection.textContent = text;
  connection.className = className;
}

show("connecting…", "quiet");
const events = new EventSource("dashboard/events");
events.addEventListener("frame", (event) => {
  live.innerHTML = event.data;
  show("live", "ok");
});
events.addEventListener("error", () => show("reconnecting…", "bad"));
