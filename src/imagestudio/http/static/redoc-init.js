// Starts ReDoc on /redoc. A file of ours, served by this server, so that the page's
// Content-Security-Policy allows no inline script. It runs before ReDoc's bundle: the page names
// the OpenAPI document and the nonce its policy allows <style> elements with.
//
// ReDoc makes <style> elements as it loads (its scroll bars' style sheet) and as it renders (its
// styled components). Every <style> element made by a script gets the page's nonce, so the
// policy allows no 'unsafe-inline' style; a <style> in markup (an injection) is still refused.
"use strict";
(function () {
  const root = document.getElementById("redoc");
  const nonce = root.dataset.styleNonce;
  const createElement = Document.prototype.createElement;
  Document.prototype.createElement = function (...args) {
    const element = createElement.apply(this, args);
    if (element instanceof HTMLStyleElement) {
      element.nonce = nonce;
    }
    return element;
  };
  document.addEventListener("DOMContentLoaded", function () {
    Redoc.init(root.dataset.openapiUrl, { nonce: nonce }, root);
  });
})();
