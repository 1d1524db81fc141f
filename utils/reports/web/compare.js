// compare.html: shows the gains and losses of the metric chosen (all of them without JavaScript).
(function () {
  "use strict";
  const select = document.getElementById("pair-metric");
  if (!select) return;
  function update() {
    document.querySelectorAll("section.pairs").forEach((section) => {
      section.hidden = section.dataset.metric !== select.value;
    });
  }
  select.addEventListener("change", update);
  document.getElementById("controls").hidden = false;
  update();
})();
