// The worklist page: every pending candidate in the screening log (GET /worklist). "Open" keeps the
// candidate's id and site in this tab's session storage — never in the URL — and goes to the form,
// which resumes the candidate's latest record.
"use strict";

(() => {
  const body = document.querySelector("#worklist tbody");
  const empty = document.getElementById("worklist-empty");
  const problem = document.getElementById("problem");
  let rows = [];

  function draw() {
    body.replaceChildren();
    for (const item of rows) {
      const tr = document.createElement("tr");
      const cells = [item.site || "", item.candidate_id, item.screening_start || "",
                     NLC.word(item.decision) + " — " + (NLC.inLang(NLC.data.boxes[item.category]) || item.category),
                     (item.ask_next || []).slice(0, 4).join(", ") + ((item.ask_next || []).length > 4 ? ", …" : "")];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      const td = document.createElement("td");
      const open = document.createElement("button");
      open.type = "button";
      open.className = "open";
      open.textContent = NLC.word("form_open");
      open.setAttribute("aria-label", NLC.word("form_open") + " " + item.candidate_id);
      open.addEventListener("click", () => {
        sessionStorage.setItem("nlc-screen-open", JSON.stringify({candidate_id: item.candidate_id, site: item.site}));
        window.location.assign("/");
      });
      td.appendChild(open);
      tr.appendChild(td);
      body.appendChild(tr);
    }
    empty.hidden = rows.length > 0;
    document.body.dataset.loaded = "true";
  }

  async function load() {
    const response = await NLC.call("GET", "/worklist");
    const answer = await response.json();
    if (!response.ok) {
      NLC.showProblem(problem, response.status + " " + (answer.error || ""));
      return;
    }
    rows = answer.pending;
    draw();
  }

  NLC.onLang(draw);
  document.addEventListener("DOMContentLoaded", load);
})();
