/* Colours on Lookalike's page and widget: window.LookalikeColours, used by app.js (loaded
 * before it: index.html's script tags, embed.js).
 *
 * The engine names every product's colour with one of 17 names (search.colour.NAMES); a card
 * shows its product's colour as a swatch and the name, and the search form's chips ("Any
 * colour" and the 17) choose the colour= sent with a search. Swatches are drawn by style.css,
 * one rule a name, so no inline style is needed under the page's Content-Security-Policy.
 * The words come translated from app.js (its _() and /i18n.json's "colours").
 */
(function () {
  "use strict";

  // search.colour.NAMES, in the engine's order.
  var NAMES = ["black", "white", "grey", "beige", "brown", "tan", "red", "pink", "orange",
    "yellow", "green", "blue", "navy", "purple", "gold", "silver", "multicolour"];

  function el(tag, className, text) {
    var node = document.createElement(tag);
    node.className = className;
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  /* A colour's swatch: a decorative circle (its name is always written beside it). */
  function swatch(code) {
    var node = el("span", "lk-swatch");
    node.setAttribute("data-colour", code);
    node.setAttribute("aria-hidden", "true");
    return node;
  }

  /* Fills `row` (a toolbar) with buttons: "Any colour" (`anyText`, colour "") then the 17
     swatches, each named for screen readers (and in a tooltip) by nameOf(code); a press calls
     choose(code). One Tab stop for the 18 (the pressed chip); the arrow keys, Home and End move
     between them (in reading order, so right to left in Persian). */
  function drawChips(row, anyText, nameOf, choose) {
    row.setAttribute("role", "toolbar");
    row.addEventListener("keydown", function (event) { moveFocus(row, event); });
    [""].concat(NAMES).forEach(function (code) {
      var chip = el("button", "lk-chip");
      chip.type = "button";
      chip.setAttribute("data-colour", code);
      chip.setAttribute("aria-pressed", "false");
      if (code) {
        chip.appendChild(swatch(code));
        chip.appendChild(el("span", "lk-visually-hidden", nameOf(code)));
        chip.title = nameOf(code);
      } else {
        chip.classList.add("lk-chip-any");
        chip.textContent = anyText;
      }
      chip.addEventListener("click", function () { choose(code); });
      row.appendChild(chip);
    });
  }

  /* Marks the chip of `code` pressed (and the one Tab stop), the others not. */
  function pressChip(row, code) {
    row.querySelectorAll(".lk-chip").forEach(function (chip) {
      var pressed = chip.getAttribute("data-colour") === code;
      chip.setAttribute("aria-pressed", String(pressed));
      chip.tabIndex = pressed ? 0 : -1;
    });
  }

  var STEPS = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };

  function moveFocus(row, event) {
    var chips = Array.prototype.slice.call(row.querySelectorAll(".lk-chip"));
    var at = chips.indexOf(document.activeElement);
    if (at < 0) { return; }
    var step = STEPS[event.key];
    var rtl = getComputedStyle(row).direction === "rtl";
    if (rtl && (event.key === "ArrowLeft" || event.key === "ArrowRight")) { step = -step; }
    var to = event.key === "Home" ? 0 : event.key === "End" ? chips.length - 1 :
      step ? (at + step + chips.length) % chips.length : -1;
    if (to < 0) { return; }
    event.preventDefault();
    chips.forEach(function (chip, i) { chip.tabIndex = i === to ? 0 : -1; });
    chips[to].focus();
  }

  /* A card's colour line: the swatch and the name, read once as `sentence` ("Colour: red"). */
  function cardLine(code, name, sentence) {
    var line = el("p", "lk-card-colour");
    line.appendChild(swatch(code));
    line.appendChild(el("span", "lk-visually-hidden", sentence));
    var shown = el("span", "lk-card-colour-name", name);
    shown.setAttribute("aria-hidden", "true");
    line.appendChild(shown);
    return line;
  }

  window.LookalikeColours = {
    names: NAMES, drawChips: drawChips, pressChip: pressChip, cardLine: cardLine
  };
})();
