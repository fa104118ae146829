// Shrinkwrap registry UI: the only script (loaded from this origin; the CSP allows no inline script).
// Progressive enhancement: every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Changing a plot axis redraws at once (the form's Plot button does the same without JavaScript).
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.requestSubmit());
  }
  // Keyboard: "/" jumps to the first form field of the page (like many registries), Escape leaves it.
  document.addEventListener("keydown", (event) => {
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement?.tagName || "");
    if (event.key === "/" && !typing) {
      const field = document.querySelector("main input:not([type=hidden]), main select");
      if (field) { event.preventDefault(); field.focus(); }
    } else if (event.key === "Escape" && typing) {
      document.activeElement.blur();
    }
  });
});
