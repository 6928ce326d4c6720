// The reader's time zone (docs/dashboard.md, "Time zone"). Every instant on a dashboard page
// is a <time datetime="2026-11-27T17:00:00Z"> whose text the server wrote in the page's one
// zone, named in the header (#page-zone). This writes each of them again in the browser's
// own zone, names that zone in the header, and keeps it in the slabot_tz cookie so that the
// pages and rows that follow come from the server in it already. window.slabotZone.rewrite
// does the same for the rows the auto-refresh swaps in. A browser that cannot say or format
// its zone keeps the server's text: one zone on the page either way.
(function () {
  "use strict";
  var label = document.getElementById("page-zone");
  var zone, format;
  try {
    zone = new Intl.DateTimeFormat().resolvedOptions().timeZone;
    // The server's text: "Fri 27 Nov 2026 12:00 EST".
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: zone, weekday: "short", day: "2-digit", month: "short", year: "numeric",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short"
    });
  } catch (e) {
    return;
  }
  if (!label || !zone) { return; }

  function text(date) {
    var part = {};
    format.formatToParts(date).forEach(function (p) { part[p.type] = p.value; });
    return part.weekday + " " + part.day + " " + part.month + " " + part.year + " " +
      part.hour + ":" + part.minute + " " + part.timeZoneName;
  }
  function rewrite(root) {
    Array.prototype.forEach.call(root.querySelectorAll("time[datetime]"), function (el) {
      var date = new Date(el.dateTime);
      if (!isNaN(date.getTime())) { el.textContent = text(date); }
    });
  }

  rewrite(document);
  label.textContent = zone;
  // IANA names are letters, digits and "/_+-": nothing a cookie value needs escaped. The
  // server ignores a name Python's zoneinfo does not know.
  if (/^[A-Za-z0-9_\/+-]{1,64}$/.test(zone)) {
    document.cookie = "slabot_tz=" + zone + "; Path=/; Max-Age=31536000; SameSite=Lax" +
      (window.location.protocol === "https:" ? "; Secure" : "");
  }
  window.slabotZone = { zone: zone, text: text, rewrite: rewrite };
})();
