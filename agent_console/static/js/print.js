// Print buttons (data-print): the report pages carry no inline script under the CSP.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-print]").forEach((button) => button.addEventListener("click", () => window.print()));
});
