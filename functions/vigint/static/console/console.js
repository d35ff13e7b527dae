// The console's own script (no inline script anywhere: the CSP allows only files from our origin).
// htmx requests carry the session's CSRF token from <meta name="csrf-token">.
"use strict";
document.addEventListener("htmx:configRequest", (event) => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) event.detail.headers["X-CSRF-Token"] = meta.content;
});
