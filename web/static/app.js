/* Lookalike's search-by-photo widget: window.Lookalike.mount(element, {apiBase, useLocation}).
 *
 * Used by the page (/) and by embed.js on other sites. Plain JavaScript, no build step.
 * The last photo stays in memory so the filters and "cheaper than this one" search again
 * with it; a result set's share link (?s=TOKEN) shows that set without the photo.
 */
(function () {
  "use strict";

  var TEMPLATE = [
    '<section class="lk-search" aria-labelledby="lk-search-title">',
    '  <h2 id="lk-search-title" class="lk-visually-hidden">Search by photo</h2>',
    '  <div class="lk-drop" tabindex="-1">',
    '    <img class="lk-preview" alt="" hidden>',
    '    <p class="lk-drop-hint">Drop a photo here, paste one (Ctrl+V), or</p>',
    '    <div class="lk-pick">',
    '      <label class="lk-button">Choose a photo',
    '        <input class="lk-file" type="file" accept="image/*" name="photo"></label>',
    '      <label class="lk-button lk-secondary">Take a photo',
    '        <input class="lk-camera" type="file" accept="image/*" capture="environment"></label>',
    '    </div>',
    '  </div>',
    '  <form class="lk-filters">',
    '    <div class="lk-field"><label for="lk-category-ID">Category</label>',
    '      <select id="lk-category-ID" class="lk-category" name="category">',
    '        <option value="">Any category</option></select></div>',
    '    <div class="lk-field"><label for="lk-max-price-ID">Under price</label>',
    '      <input id="lk-max-price-ID" class="lk-max-price" name="max_price" type="number"',
    '        min="0.01" step="0.01" inputmode="decimal" placeholder="any"></div>',
    '    <button class="lk-button lk-apply" type="submit">Apply filters</button>',
    '  </form>',
    '</section>',
    '<p class="lk-status" role="status" aria-live="polite"></p>',
    '<section class="lk-results-section" aria-labelledby="lk-results-title-ID" hidden>',
    '  <h2 id="lk-results-title-ID" class="lk-results-title">Lookalikes</h2>',
    '  <p class="lk-share" hidden><label for="lk-share-ID">Share these results:</label>',
    '    <input id="lk-share-ID" class="lk-share-url" type="url" readonly>',
    '    <button class="lk-button lk-secondary lk-copy" type="button">Copy link</button></p>',
    '  <ul class="lk-results" role="list"></ul>',
    '</section>'
  ].join("\n");

  var counter = 0;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function formatPrice(price, currency) {
    if (price === null || price === undefined) { return "Price on request"; }
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: currency })
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
    this.photo = null;
    root.classList.add("lk-widget");
    root.innerHTML = TEMPLATE.replace(/-ID/g, "-" + counter);
    this.$ = function (selector) { return root.querySelector(selector); };
    this.bind();
    this.loadCategories();
    var token = this.useLocation ? new URLSearchParams(window.location.search).get("s") : null;
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
        self.status("Choose a photo first: the filters narrow a photo search.");
      }
    });
    this.$(".lk-copy").addEventListener("click", function () {
      var input = self.$(".lk-share-url");
      input.select();
      if (navigator.clipboard) {
        navigator.clipboard.writeText(input.value).then(function () {
          self.status("Link copied.");
        }, function () { self.status("Select the link and copy it."); });
      }
    });
  };

  Widget.prototype.status = function (text, isError) {
    var node = this.$(".lk-status");
    node.textContent = text;
    node.classList.toggle("lk-error", Boolean(isError));
  };

  Widget.prototype.request = function (path, init) {
    var api = this.api;
    return fetch(api + path, init).catch(function (error) {
      // A refused cross-origin request and an unreachable server look alike to a page
      // (fetch rejects); the shopper gets a sentence, the shop's developer the likely cause.
      if (api && console && console.error) {
        console.error("Lookalike: " + api + " could not be reached from this page (" + error +
          "); if the server is up, add this page's origin to its WEB_CORS_ORIGINS");
      }
      throw new Error("The photo search is not available right now. Please try again later.");
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) {
          throw new Error(body.detail || ("The server answered " + response.status + "."));
        }
        return body;
      });
    });
  };

  Widget.prototype.loadCategories = function () {
    var select = this.$(".lk-category");
    this.request("/api/v1/categories").then(function (body) {
      body.categories.forEach(function (category) {
        var option = el("option", "", category.replace(/_/g, " "));
        option.value = category;
        select.appendChild(option);
      });
    }).catch(function () { /* the filter still works with "Any" */ });
  };

  Widget.prototype.choose = function (file) {
    var preview = this.$(".lk-preview");
    if (preview.src) { URL.revokeObjectURL(preview.src); }
    preview.src = URL.createObjectURL(file);
    preview.alt = "Your photo";
    preview.hidden = false;
    this.photo = file;
    this.search({});
  };

  Widget.prototype.search = function (extra) {
    var self = this;
    var form = new FormData();
    form.append("photo", this.photo, this.photo.name || "photo.jpg");
    var category = this.$(".lk-category").value;
    var maxPrice = this.$(".lk-max-price").value;
    if (category) { form.append("category", category); }
    if (maxPrice) { form.append("max_price", Number(maxPrice).toFixed(2)); }
    if (extra.cheaperThan) { form.append("cheaper_than", extra.cheaperThan); }
    this.status("Searching…");
    this.root.setAttribute("aria-busy", "true");
    return this.request("/api/v1/search", { method: "POST", body: form }).then(function (body) {
      self.show(body, extra.cheaperThan);
    }).catch(function (error) {
      self.status(error.message, true);
    }).then(function () { self.root.removeAttribute("aria-busy"); });
  };

  Widget.prototype.loadShared = function (token) {
    var self = this;
    this.status("Loading shared results…");
    return this.request("/api/v1/searches/" + encodeURIComponent(token)).then(function (body) {
      self.show(body, null, true);
    }).catch(function (error) { self.status(error.message, true); });
  };

  Widget.prototype.show = function (body, cheaperThan, shared) {
    var self = this;
    var list = this.$(".lk-results");
    list.innerHTML = "";
    body.results.forEach(function (item) { list.appendChild(self.card(item)); });
    this.$(".lk-results-section").hidden = false;
    var title = "Lookalikes";
    if (body.category) {
      title += " in " + body.category.replace(/_/g, " ") +
        (body.category_inferred ? " (our guess)" : "");
    }
    if (cheaperThan) { title += ", cheaper than " + cheaperThan; }
    this.$(".lk-results-title").textContent = title;
    var count = body.results.length;
    this.status(count ? (shared ? "Shared results: " : "") + count + " lookalike" +
      (count === 1 ? "" : "s") + "." : "Nothing matches these filters.");
    if (body.share_url) {
      this.$(".lk-share").hidden = false;
      this.$(".lk-share-url").value = body.share_url;
      if (this.useLocation && body.share_token) {
        history.replaceState(null, "", "?s=" + encodeURIComponent(body.share_token));
      }
    }
  };

  Widget.prototype.card = function (item) {
    var self = this;
    var card = el("li", "lk-card");
    card.setAttribute("data-sku", item.sku);
    card.setAttribute("data-category", item.category || "");
    card.setAttribute("data-price", item.price === null ? "" : item.price);
    var image = el("img", "lk-card-image");
    image.src = item.thumbnail_url;
    image.alt = item.name;
    image.loading = "lazy";
    image.width = 320;
    image.height = 320;
    card.appendChild(image);
    card.appendChild(el("h3", "lk-card-name", item.name));
    card.appendChild(el("p", "lk-card-price", formatPrice(item.price, item.currency)));
    card.appendChild(el("p", "lk-card-similarity", Math.round(item.similarity) + "% similar"));
    var actions = el("div", "lk-card-actions");
    if (item.url) {
      var link = el("a", "lk-button", "View in shop");
      link.href = item.url;
      link.target = "_blank";
      link.rel = "noopener";
      link.setAttribute("aria-label", "View " + item.name + " in the shop");
      actions.appendChild(link);
    }
    if (this.photo && item.price !== null) {
      var cheaper = el("button", "lk-button lk-secondary lk-cheaper", "Cheaper than this one");
      cheaper.type = "button";
      cheaper.setAttribute("aria-label", "Show lookalikes cheaper than " + item.name);
      cheaper.addEventListener("click", function () { self.search({ cheaperThan: item.sku }); });
      actions.appendChild(cheaper);
    }
    card.appendChild(actions);
    return card;
  };

  window.Lookalike = {
    mount: function (element, options) { return new Widget(element, options || {}); }
  };
})();
