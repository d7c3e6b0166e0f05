// poolrelay console: the only script. Pages work without it; it refreshes the Overview's
// charts every 10 seconds by fetching the same page and swapping the #live element.
(function () {
  var live = document.getElementById("live");
  if (!live) { return; }
  setInterval(function () {
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (text) {
        if (!text) { return; }
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
        if (fresh) { live.replaceWith(fresh); live = fresh; }
      })
      .catch(function () {});
  }, 10000);
})();
