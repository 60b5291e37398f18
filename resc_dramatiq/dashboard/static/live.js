// Live refresh: every few seconds, fetch this page's main part (?partial=1) and replace
// the content of each element marked data-live (by id). Forms, selections and scroll
// position stay as they are; nothing from the server is ever run as script.
(function () {
  "use strict";
  var seconds = parseFloat(document.body.getAttribute("data-refresh") || "0");
  if (!(seconds > 0)) { return; }
  function refresh() {
    if (document.visibilityState === "hidden") { return; }
    var url = new URL(window.location.href);
    url.searchParams.set("partial", "1");
    url.searchParams.delete("notice");
    fetch(url.toString(), { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        fresh.querySelectorAll("[data-live]").forEach(function (node) {
          var here = document.getElementById(node.id);
          if (here !== null) { here.replaceChildren.apply(here, Array.from(node.childNodes)); }
        });
        document.body.removeAttribute("data-stale");
      })
      .catch(function () { document.body.setAttribute("data-stale", "1"); });
  }
  window.setInterval(refresh, seconds * 1000);
})();
