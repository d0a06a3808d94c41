// Starts Swagger UI on /docs. A file of ours, served by this server, so that the page's
// Content-Security-Policy allows no inline script. The page names the OpenAPI document to load.
"use strict";
(function () {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null, // no badge from a validator service: the page asks nothing of another host
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();
