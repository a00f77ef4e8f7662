"use strict";
if (new URLSearchParams(location.search).has("error")) {
  document.getElementById("login-error").hidden = false;
}
