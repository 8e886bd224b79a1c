/* Lookalike's search-by-photo widget: window.Lookalike.mount(element, {apiBase, useLocation}).
 *
 * Used by the page (/) and by embed.js on other sites. Plain JavaScript, no build step.
 * The last photo stays in memory so the filters and "cheaper than this one" search again
 * with it; a result set's share link (?s=TOKEN) shows that set without the photo.
 * Each request has a sequence number and aborts the one before it: only the newest request's
 * answer is drawn, so a slow answer to an older photo never replaces a newer photo's results.
 *
 * Words come from the server in the visitor's language (GET /i18n.json: Accept-Language, or
 * the `language` option, or ?lang= on the page), marked _("...") here for the catalogues
 * (lookalike/i18n); the widget is laid out right to left for Persian.
 *
 * Colour (colours.js, loaded first): each card shows its product's colour, and the colour
 * chips send colour= with the search: that colour's lookalikes first, the others after (the
 * API reorders, it does not filter).
 */
(function () {
  "use strict";

  var I18N = { language: "en", direction: "ltr", messages: {}, categories: {}, colours: {} };
  var Colours = window.LookalikeColours;  // colours.js: the chips and swatches

  /* The English text in the visitor's language, {name}s filled from `values`. */
  function _(text, values) {
    var translated = I18N.messages[text] || text;
    return translated.replace(/\{(\w+)\}/g, function (whole, name) {
      return values && values[name] !== undefined ? String(values[name]) : whole;
    });
  }

  function categoryName(code) {
    return I18N.categories[code] || code.replace(/_/g, " ");
  }

  function colourName(code) { return (I18N.colours || {})[code] || code; }

  function template() { return [
    '<section class="lk-search" aria-labelledby="lk-search-title">',
    '  <h2 id="lk-search-title" class="lk-visually-hidden">' + _("Search by photo") + '</h2>',
    '  <div class="lk-drop" tabindex="-1">',
    '    <img class="lk-preview" alt="" hidden>',
    '    <p class="lk-drop-hint">' + _("Drop a photo here, paste one (Ctrl+V), or") + '</p>',
    '    <div class="lk-pick">',
    '      <label class="lk-button">' + _("Choose a photo"),
    '        <input class="lk-file" type="file" accept="image/*" name="photo"></label>',
    '      <label class="lk-button lk-secondary">' + _("Take a photo"),
    '        <input class="lk-camera" type="file" accept="image/*" capture="environment"></label>',
    '    </div>',
    '  </div>',
    '  <form class="lk-filters">',
    '    <div class="lk-field"><label for="lk-category-ID">' + _("Category") + '</label>',
    '      <select id="lk-category-ID" class="lk-category" name="category">',
    '        <option value="">' + _("Our guess from the photo") + '</option>',
    '        <option value="' + ALL_CATEGORIES + '">' + _("All categories") + '</option>',
    '      </select></div>',
    '    <div class="lk-field"><label for="lk-max-price-ID">' + _("Under price") + '</label>',
    '      <input id="lk-max-price-ID" class="lk-max-price" name="max_price" type="number"',
    '        min="0.01" step="0.01" inputmode="decimal" placeholder="' + _("any") + '"></div>',
    '    <div class="lk-field lk-colour-field">',
    '      <span id="lk-colour-label-ID" class="lk-field-label">' + _("Colour") +
      ' <span class="lk-colour-chosen"></span></span>',
    '      <div class="lk-chips" aria-labelledby="lk-colour-label-ID"></div></div>',
    '    <button class="lk-button lk-apply" type="submit">' + _("Apply filters") + '</button>',
    '  </form>',
    '</section>',
    '<p class="lk-status" role="status" aria-live="polite"></p>',
    '<p class="lk-retry-line" hidden><button class="lk-button lk-secondary lk-retry" type="button">' +
      _("Try again") + '</button></p>',
    '<section class="lk-results-section" aria-labelledby="lk-results-title-ID" hidden>',
    '  <h2 id="lk-results-title-ID" class="lk-results-title">' + _("Lookalikes") + '</h2>',
    '  <p class="lk-share" hidden><label for="lk-share-ID">' + _("Share these results:") +
      '</label>',
    '    <input id="lk-share-ID" class="lk-share-url" type="url" dir="ltr" readonly>',
    '    <button class="lk-button lk-secondary lk-copy" type="button">' + _("Copy link") +
      '</button></p>',
    '  <ul class="lk-results" role="list"></ul>',
    '</section>'
  ].join("\n"); }

  var counter = 0;
  var ALL_CATEGORIES = "*";
  // The query parameter of a share link to the shop's own page (embed.js data-share-page):
  // not "s", which shops' own pages often use for their text search.
  var SHARED_ON_SHOP_PAGE = "lookalike";  // the category select's value for the API's all_categories

  /* An error the shopper reads: `retry` says whether sending the same request again may help
     (the server busy or unreachable), `badPhoto` that the photo itself was refused. */
  function ShopperError(message, retry, badPhoto) {
    var error = new Error(message);
    error.retry = Boolean(retry);
    error.badPhoto = Boolean(badPhoto);
    return error;
  }

  function isAbort(error) { return error && error.name === "AbortError"; }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function formatPrice(price, currency) {
    if (price === null || price === undefined) { return _("Price on request"); }
    try {
      return new Intl.NumberFormat(I18N.language, { style: "currency", currency: currency })
        .format(Number(price));
    } catch (error) {
      return price + " " + currency;
    }
  }

  function Widget(root, options) {
    counter += 1;
    this.root = root;
    this.api = (options.apiBase || "").replace(/\/$/, "");
    this.useLocation = Boolean(options.useLocation);
    this.sharePage = options.sharePage || "";  // embedded: share links lead to this page
    this.photo = null;
    this.colour = "";        // the chosen chip's colour; "": any colour
    this.sequence = 0;       // the newest request's number; older answers are dropped
    this.controller = null;  // aborts the newest request when another one starts
    this.again = null;       // repeats the last request (the "Try again" button)
    root.classList.add("lk-widget");
    root.lang = I18N.language;
    root.dir = I18N.direction;
    root.innerHTML = template().replace(/-ID/g, "-" + counter);
    this.$ = function (selector) { return root.querySelector(selector); };
    this.bind();
    this.drawChips();
    this.loadCategories();
    var params = new URLSearchParams(window.location.search);
    var token = this.useLocation ? params.get("s") :
      (this.sharePage ? params.get(SHARED_ON_SHOP_PAGE) : null);
    if (token) { this.loadShared(token); }
  }

  Widget.prototype.bind = function () {
    var self = this;
    [".lk-file", ".lk-camera"].forEach(function (selector) {
      self.$(selector).addEventListener("change", function (event) {
        var file = event.target.files && event.target.files[0];
        if (file) { self.choose(file); }
      });
    });
    var drop = this.$(".lk-drop");
    drop.addEventListener("dragover", function (event) {
      event.preventDefault();
      drop.classList.add("lk-dragging");
    });
    drop.addEventListener("dragleave", function () { drop.classList.remove("lk-dragging"); });
    drop.addEventListener("drop", function (event) {
      event.preventDefault();
      drop.classList.remove("lk-dragging");
      var file = event.dataTransfer.files && event.dataTransfer.files[0];
      if (file) { self.choose(file); }
    });
    // On its own page the widget takes a photo pasted anywhere; embedded, only one pasted
    // into the widget, never one meant for the shop's own fields (a review box...).
    (this.useLocation ? document : this.root).addEventListener("paste", function (event) {
      var items = (event.clipboardData && event.clipboardData.items) || [];
      for (var i = 0; i < items.length; i += 1) {
        if (items[i].kind === "file" && items[i].type.indexOf("image/") === 0) {
          self.choose(items[i].getAsFile());
          event.preventDefault();
          return;
        }
      }
    });
    this.$(".lk-filters").addEventListener("submit", function (event) {
      event.preventDefault();
      if (self.photo) {
        self.search({});
      } else {
        self.status(_("Choose a photo first: the filters narrow a photo search."));
      }
    });
    this.$(".lk-retry").addEventListener("click", function () {
      if (self.again) { self.again(); }
    });
    this.$(".lk-preview").addEventListener("error", function (event) {
      event.target.hidden = true;  // a file the browser cannot draw: no broken image
    });
    this.$(".lk-copy").addEventListener("click", function () {
      var input = self.$(".lk-share-url");
      input.select();
      if (navigator.clipboard) {
        navigator.clipboard.writeText(input.value).then(function () {
          self.status(_("Link copied."));
        }, function () { self.status(_("Select the link and copy it.")); });
      }
    });
  };

  Widget.prototype.drawChips = function () {
    var self = this;
    Colours.drawChips(this.$(".lk-chips"), _("Any colour"), colourName, function (code) {
      self.chooseColour(code);
    });
    this.chooseColour("", true);
  };

  /* Presses the chip of `code` ("": any colour); with a photo, searches again in that colour
     (unless `quiet`: the widget is only being drawn). */
  Widget.prototype.chooseColour = function (code, quiet) {
    this.colour = code;
    Colours.pressChip(this.$(".lk-chips"), code);
    this.$(".lk-colour-chosen").textContent = code ? colourName(code) : _("Any colour");
    if (this.photo && !quiet) { this.search({}); }
  };

  Widget.prototype.status = function (text, isError) {
    var node = this.$(".lk-status");
    node.textContent = text;
    node.classList.toggle("lk-error", Boolean(isError));
    this.$(".lk-retry-line").hidden = true;
  };

  /* A new request's number; the request before it is aborted. */
  Widget.prototype.begin = function () {
    if (this.controller) { this.controller.abort(); }
    this.controller = window.AbortController ? new AbortController() : null;
    this.sequence += 1;
    this.root.setAttribute("aria-busy", "true");
    this.$(".lk-apply").disabled = true;
    return this.sequence;
  };

  /* Whether the request numbered `sequence` is still the newest (its answer may be drawn). */
  Widget.prototype.current = function (sequence) { return sequence === this.sequence; };

  Widget.prototype.finish = function (sequence) {
    if (!this.current(sequence)) { return; }
    this.root.removeAttribute("aria-busy");
    this.$(".lk-apply").disabled = false;
  };

  /* The error state: no results of an earlier search stay under the message; a refused photo
     is forgotten (so "cheaper than this one" and the filters never send it again); a retry
     button when sending the same request again may help. */
  Widget.prototype.fail = function (error, retry) {
    this.$(".lk-results-section").hidden = true;
    this.$(".lk-results").innerHTML = "";
    this.$(".lk-share").hidden = true;
    if (error.badPhoto) {
      this.photo = null;
      this.$(".lk-preview").hidden = true;
    }
    this.status(error.message, true);
    this.again = error.retry ? retry : null;
    this.$(".lk-retry-line").hidden = !error.retry;
  };

  Widget.prototype.request = function (path, init) {
    init = init || {};
    // The API's error details in the page's language (problem+json "detail").
    init.headers = { "Accept-Language": I18N.language };
    if (this.controller) { init.signal = this.controller.signal; }
    var api = this.api;
    return fetch(api + path, init).catch(function (error) {
      if (isAbort(error)) { throw error; }
      // A refused cross-origin request and an unreachable server look alike to a page
      // (fetch rejects); the shopper gets a sentence, the shop's developer the likely cause.
      if (api && console && console.error) {
        console.error("Lookalike: " + api + " could not be reached from this page (" + error +
          "); if the server is up, add this page's origin to its WEB_CORS_ORIGINS");
      }
      throw ShopperError(
        _("The photo search is not available right now. Please try again later."), true);
    }).then(function (response) {
      return response.json().catch(function (error) {
        if (isAbort(error)) { throw error; }
        return {};
      }).then(function (body) {
        if (!response.ok) { throw shopperError(response.status, body); }
        return body;
      });
    });
  };

  /* What the shopper reads for an error answer (RFC 9457 problem details). */
  function shopperError(status, body) {
    var kind = String(body.type || "").replace(/^.*\//, "");
    if (status === 415 || kind === "invalid-image") {
      return ShopperError(
        _("This file is not a photo we can read. Choose a JPEG, PNG or WebP photo."), false, true);
    }
    if (status === 413) { return ShopperError(body.detail || "", false, true); }
    if (status === 429) {
      return ShopperError(body.detail || _("Too many searches. Please wait a moment."), true);
    }
    if (status >= 500) {
      return ShopperError(
        _("The photo search is not available right now. Please try again later."), true);
    }
    return ShopperError(body.detail || _("The server answered {status}.", { status: status }));
  }

  Widget.prototype.loadCategories = function () {
    var select = this.$(".lk-category");
    this.request("/api/v1/categories").then(function (body) {
      body.categories.forEach(function (category) {
        var option = el("option", "", categoryName(category));
        option.value = category;
        select.appendChild(option);
      });
    }).catch(function () { /* the filter still works with "Any" */ });
  };

  Widget.prototype.choose = function (file) {
    var preview = this.$(".lk-preview");
    if (preview.src) { URL.revokeObjectURL(preview.src); }
    preview.src = URL.createObjectURL(file);
    preview.alt = _("Your photo");
    preview.hidden = false;
    this.photo = file;
    this.search({});
  };

  /* extra.cheaperThan: the card's product ({sku, name}) whose price the results stay under. */
  Widget.prototype.search = function (extra) {
    var self = this;
    var form = new FormData();
    form.append("photo", this.photo, this.photo.name || "photo.jpg");
    var category = this.$(".lk-category").value;
    var maxPrice = this.$(".lk-max-price").value;
    if (category === ALL_CATEGORIES) {
      form.append("all_categories", "true");
    } else if (category) {
      form.append("category", category);
    }
    if (maxPrice) { form.append("max_price", Number(maxPrice).toFixed(2)); }
    if (extra.cheaperThan) { form.append("cheaper_than", extra.cheaperThan.sku); }
    var colour = this.colour;
    if (colour) { form.append("colour", colour); }
    var sequence = this.begin();
    this.status(_("Searching…"));
    return this.request("/api/v1/search", { method: "POST", body: form }).then(function (body) {
      if (self.current(sequence)) { self.show(body, extra.cheaperThan, false, colour); }
    }).catch(function (error) {
      if (self.current(sequence) && !isAbort(error)) {
        self.fail(error, function () { self.search(extra); });
      }
    }).then(function () { self.finish(sequence); });
  };

  Widget.prototype.loadShared = function (token) {
    var self = this;
    var sequence = this.begin();
    this.status(_("Loading shared results…"));
    return this.request("/api/v1/searches/" + encodeURIComponent(token)).then(function (body) {
      if (self.current(sequence)) { self.show(body, null, true); }
    }).catch(function (error) {
      if (self.current(sequence) && !isAbort(error)) {
        self.fail(error, function () { self.loadShared(token); });
      }
    }).then(function () { self.finish(sequence); });
  };

  /* colour: the colour asked for ("" or undefined: none), named in the title. */
  Widget.prototype.show = function (body, cheaperThan, shared, colour) {
    var self = this;
    var list = this.$(".lk-results");
    list.innerHTML = "";
    body.results.forEach(function (item) { list.appendChild(self.card(item)); });
    var section = this.$(".lk-results-section");
    section.hidden = false;
    // On a phone the results start below the photo and filters: bring them into view.
    if (!shared && section.getBoundingClientRect().top > window.innerHeight * 0.75) {
      section.scrollIntoView({ block: "start" });
    }
    var title = _("Lookalikes");
    if (body.category) {
      var named = { category: categoryName(body.category) };
      title = body.category_inferred ? _("Lookalikes in {category} (our guess)", named) :
        _("Lookalikes in {category}", named);
    }
    if (cheaperThan) {
      title = _("{title}, cheaper than {name}", { title: title, name: cheaperThan.name });
    }
    if (colour) {
      title = _("{title}: {colour} first", { title: title, colour: colourName(colour) });
    }
    this.$(".lk-results-title").textContent = title;
    var count = body.results.length;
    // No plural rules in the browser: each language words these so that one form fits
    // every count above 1 (Russian: "Найдено похожих: 5.").
    var found = count === 1 ? _("{count} lookalike.", { count: formatNumber(1) }) :
      _("{count} lookalikes.", { count: formatNumber(count) });
    this.status(count ? (shared ? _("Shared results: {found}", { found: found }) : found) :
      _("Nothing matches these filters."));
    if (body.share_url) {
      this.$(".lk-share").hidden = false;
      this.$(".lk-share-url").value = this.shareUrl(body);
      if (this.useLocation && body.share_token) {
        var params = new URLSearchParams(window.location.search);  // keeps ?lang=
        params.set("s", body.share_token);
        history.replaceState(null, "", "?" + params.toString());
      }
    }
  };

  /* The link that shows these results: on the shop's page when embed.js names one
     (data-share-page), else the Lookalike server's page. */
  Widget.prototype.shareUrl = function (body) {
    if (!this.sharePage || !body.share_token) { return body.share_url; }
    var url = new URL(this.sharePage, window.location.href);
    url.searchParams.set(SHARED_ON_SHOP_PAGE, body.share_token);
    return url.toString();
  };

  Widget.prototype.card = function (item) {
    var self = this;
    var card = el("li", "lk-card");
    card.setAttribute("data-sku", item.sku);
    card.setAttribute("data-category", item.category || "");
    card.setAttribute("data-price", item.price === null ? "" : item.price);
    card.setAttribute("data-colour", item.colour || "");
    var image = el("img", "lk-card-image");
    image.src = item.thumbnail_url;
    image.alt = item.name;
    image.loading = "lazy";
    image.width = 320;
    image.height = 320;
    card.appendChild(image);
    card.appendChild(el("h3", "lk-card-name", item.name));
    card.appendChild(el("p", "lk-card-price", formatPrice(item.price, item.currency)));
    if (item.colour) {  // null: not computed yet
      var named = { colour: colourName(item.colour) };
      card.appendChild(Colours.cardLine(item.colour, named.colour, _("Colour: {colour}", named)));
    }
    var rounded = Math.round(item.similarity);
    if (rounded > 0) {  // "0% similar" tells a shopper nothing: the rank says enough
      var percent = new Intl.NumberFormat(I18N.language, { style: "percent" })
        .format(rounded / 100);
      card.appendChild(el("p", "lk-card-similarity", _("{percent} similar", { percent: percent })));
    }
    var actions = el("div", "lk-card-actions");
    if (item.url) {
      var link = el("a", "lk-button", _("View in shop"));
      link.href = item.url;
      link.target = "_blank";
      link.rel = "noopener";
      link.setAttribute("aria-label", _("View {name} in the shop", { name: item.name }));
      actions.appendChild(link);
    }
    if (this.photo && item.price !== null) {
      var cheaper = el("button", "lk-button lk-secondary lk-cheaper", _("Cheaper than this one"));
      cheaper.type = "button";
      cheaper.setAttribute("aria-label",
        _("Show lookalikes cheaper than {name}", { name: item.name }));
      cheaper.addEventListener("click", function () {
        self.search({ cheaperThan: { sku: item.sku, name: item.name } });
      });
      actions.appendChild(cheaper);
    }
    card.appendChild(actions);
    return card;
  };

  function formatNumber(value) { return new Intl.NumberFormat(I18N.language).format(value); }

  /* The words of `language` (or of the browser's Accept-Language when it is empty), once. */
  var loading = null;
  function loadWords(apiBase, language) {
    if (!loading) {
      var query = language ? "?lang=" + encodeURIComponent(language) : "";
      loading = fetch((apiBase || "").replace(/\/$/, "") + "/i18n.json" + query)
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (body) { if (body) { I18N = body; } return I18N; })
        .catch(function () { return I18N; });  // English, from the code
    }
    return loading;
  }

  window.Lookalike = {
    /* Mounts the widget once its words are loaded; options: apiBase, useLocation, language,
       sharePage. */
    mount: function (element, options) {
      options = options || {};
      return loadWords(options.apiBase, options.language).then(function () {
        return new Widget(element, options);
      });
    },
    /* The page's own words (elements marked data-i18n), its language and direction. */
    translatePage: function (apiBase, language) {
      return loadWords(apiBase, language).then(function (words) {
        document.documentElement.lang = words.language;
        document.documentElement.dir = words.direction;
        document.querySelectorAll("[data-i18n]").forEach(function (node) {
          node.textContent = _(node.textContent.trim());
        });
        return words;
      });
    }
  };
})();
