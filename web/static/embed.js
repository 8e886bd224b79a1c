/* Lookalike's embeddable widget.
 *
 *   <div id="lookalike"></div>
 *   <script src="https://YOUR-LOOKALIKE-SERVER/embed.js" data-target="#lookalike" async></script>
 *
 * data-language="ru" (en, ru, es, fa) fixes the widget's language; without it the visitor's
 * browser chooses (Accept-Language).
 * data-share-page="https://shop.example/lookalikes" makes the widget's share links lead to that
 * page of the shop (?lookalike=TOKEN), where the widget (embedded there too, with the same
 * attribute) shows the shared results; without it they lead to the Lookalike server's page.
 * Loads the widget's style and code (colours.js, app.js) from the server this script came from and mounts the
 * search-by-photo widget in the target element. The host page's origin must be listed in
 * the server's WEB_CORS_ORIGINS setting.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) { return; }
  var origin = new URL(script.src, document.baseURI).origin;
  var selector = script.getAttribute("data-target") || "#lookalike";

  function mount() {
    var target = document.querySelector(selector);
    if (!target) {
      console.error("Lookalike: no element matches " + selector);
      return;
    }
    window.Lookalike.mount(target, {
      apiBase: origin,
      useLocation: false,
      language: script.getAttribute("data-language") || "",
      sharePage: script.getAttribute("data-share-page") || ""
    });
  }

  var style = document.createElement("link");
  style.rel = "stylesheet";
  style.href = origin + "/static/style.css";
  document.head.appendChild(style);

  if (window.Lookalike) {
    mount();
    return;
  }
  // colours.js first: app.js draws the colour chips with it.
  function load(path, then) {
    var code = document.createElement("script");
    code.src = origin + path;
    code.onload = then;
    document.head.appendChild(code);
  }
  load("/static/colours.js", function () { load("/static/app.js", mount); });
})();
