// The screening form: after each answer the record is screened again (POST /form/plan, not logged);
// the page shows each criterion's status and reason, moves the questions that can still settle the
// decision to the top (most decisive first), greys what can no longer change it, and "Save" logs
// the decision (POST /screen). A candidate opened from the worklist is resumed with POST /form/resume.
"use strict";

(() => {
  const form = document.getElementById("record-form");
  const askList = document.getElementById("ask-list");
  const askStatus = document.getElementById("ask-status");
  const verdict = document.getElementById("verdict");
  const problem = document.getElementById("problem");
  const saveStatus = document.getElementById("save-status");
  const blocks = Array.from(document.querySelectorAll(".q[data-q]"));
  const byPath = new Map(blocks.map((block, index) => {
    block.dataset.order = String(index);
    block._home = block.parentElement;
    return [block.dataset.q, block];
  }));
  for (const group of document.querySelectorAll("fieldset.group")) {  // a group sits where its first field is
    const first = group.querySelector(".q[data-order]");
    group.dataset.order = first ? first.dataset.order : "0";
  }
  let lastPlan = null;
  let planned = 0;
  let pending = null;
  // the record as opened (resumed from the log): what the form does not show — a FHIR import's
  // provenance, an entry's own fields — is kept when the record is screened or saved
  let base = {};

  // -- the record, read from and written to the inputs ------------------------------------------

  function valueOf(input) {
    const raw = input.value.trim();
    if (raw === "") return undefined;
    switch (input.dataset.type) {
      case "bool": return raw === "true";
      case "int": return /^-?\d+$/.test(raw) ? Number(raw) : raw;
      case "number": return Number.isFinite(Number(raw)) ? Number(raw) : raw;
      default: return raw;
    }
  }

  function setIn(record, path, value) {
    const parts = path.split(".");
    let node = record;
    for (const part of parts.slice(0, -1)) {
      if (typeof node[part] !== "object" || node[part] === null) node[part] = {};
      node = node[part];
    }
    node[parts[parts.length - 1]] = value;
  }

  function deleteIn(record, path) {  // and the objects it leaves empty
    const parts = path.split(".");
    const trail = [record];
    for (const part of parts.slice(0, -1)) {
      const node = trail[trail.length - 1][part];
      if (node === null || typeof node !== "object" || Array.isArray(node)) return;
      trail.push(node);
    }
    delete trail[trail.length - 1][parts[parts.length - 1]];
    for (let i = trail.length - 1; i > 0 && Object.keys(trail[i]).length === 0; i--) delete trail[i - 1][parts[i - 1]];
  }

  function getIn(record, path) {
    let node = record;
    for (const part of path.split(".")) {
      if (node === null || typeof node !== "object") return undefined;
      node = node[part];
    }
    return node;
  }

  function readList(block) {
    const list = block.querySelector(".list");
    if (list.querySelector(".list-state").value !== "listed") return undefined;
    const entries = [];
    for (const row of list.querySelectorAll("tbody tr.entry")) {
      if (list.hasAttribute("data-scalar")) {
        const value = valueOf(row.querySelector("[data-name]"));
        if (value !== undefined) entries.push(value);
        continue;
      }
      const entry = row._base ? structuredClone(row._base) : {};
      for (const input of row.querySelectorAll("[data-name]")) {
        const value = valueOf(input);
        if (value !== undefined) entry[input.dataset.name] = value;
        else delete entry[input.dataset.name];
      }
      if (Object.keys(entry).length) entries.push(entry);
    }
    return entries;
  }

  function record() {
    const out = structuredClone(base);
    for (const block of blocks) {
      const value = block.dataset.type === "list" ? readList(block)
        : valueOf(block.querySelector("[data-path]"));
      if (value !== undefined) setIn(out, block.dataset.q, value);
      else deleteIn(out, block.dataset.q);
    }
    return out;
  }

  function addEntry(list, entry) {
    const row = list.querySelector("template").content.firstElementChild.cloneNode(true);
    NLC.wordsIn(row);
    list.querySelector("tbody").appendChild(row);
    list.querySelector(".list-state").value = "listed";
    if (entry !== undefined) {
      if (entry !== null && typeof entry === "object" && !Array.isArray(entry)) row._base = structuredClone(entry);
      for (const input of row.querySelectorAll("[data-name]")) {
        const value = list.hasAttribute("data-scalar") ? entry : entry[input.dataset.name];
        if (value !== undefined && value !== null) input.value = String(value);
      }
    }
    return row;
  }

  function fill(rec) {
    base = structuredClone(rec);
    form.reset();
    for (const body of form.querySelectorAll(".list tbody")) body.replaceChildren();
    for (const block of blocks) {
      const value = getIn(rec, block.dataset.q);
      if (value === undefined || value === null) continue;
      if (block.dataset.type === "list") {
        const list = block.querySelector(".list");
        list.querySelector(".list-state").value = "listed";
        for (const entry of Array.isArray(value) ? value : []) addEntry(list, entry);
      } else {
        block.querySelector("[data-path]").value = String(value);
      }
    }
  }

  // -- showing a plan ---------------------------------------------------------------------------

  function answered(block) {
    if (block.dataset.type === "list") return block.querySelector(".list-state").value !== "";
    return block.querySelector("[data-path]").value.trim() !== "";
  }

  function goHome(block) {
    const home = block._home;
    const order = Number(block.dataset.order);
    const after = Array.from(home.children).find((el) => el.matches("[data-order]") && Number(el.dataset.order) > order);
    if (block.parentElement !== home || block.nextElementSibling !== (after || null)) home.insertBefore(block, after || null);
  }

  function showErrors(row) {
    for (const el of form.querySelectorAll(".error")) el.textContent = "";
    for (const block of blocks) block.classList.remove("invalid");
    if (!row || row.decision !== "error") return;
    for (const path of row.error_fields || []) {
      const block = byPath.get(path) || blocks.find((b) => path.startsWith(b.dataset.q + ".") || path.startsWith(b.dataset.q + "["));
      if (!block) continue;
      block.classList.add("invalid");
      block.querySelector(".error").textContent = row.error;
    }
  }

  function render(plan) {
    const row = plan.decision;
    const decided = plan.decided && row.decision !== "error";
    const open = new Map(plan.questions.map((q, i) => [q.path, i]));
    const active = document.activeElement;
    // the questions that can still settle the decision, most decisive first, at the top
    const asked = plan.questions.map((q) => byPath.get(q.path)).filter(Boolean);
    for (const block of blocks) if (!open.has(block.dataset.q)) goHome(block);
    asked.forEach((block, i) => {
      if (askList.children[i] !== block) askList.insertBefore(block, askList.children[i] || null);
      block.classList.toggle("first", i === 0);
    });
    for (const block of blocks) {
      const isOpen = open.has(block.dataset.q);
      block.classList.toggle("open", isOpen);
      block.classList.toggle("moot", !isOpen && !answered(block) && row.decision !== "error");
      if (!isOpen) block.classList.remove("first");
    }
    for (const group of form.querySelectorAll("fieldset.group")) {
      group.hidden = !group.querySelector(".q");
    }
    if (active && active !== document.activeElement && document.contains(active)) active.focus();
    // the decision and each criterion
    const missing = plan.questions.some((q) => q.required && !q.refused);
    showErrors(missing ? null : row);
    if (row.decision === "error") {
      verdict.dataset.decision = "";
      verdict.textContent = missing ? NLC.word("form_start_here") : NLC.word("form_unreadable") + " " + row.error;
      askStatus.textContent = missing ? NLC.word("form_start_here") : NLC.word("form_unreadable");
    } else {
      verdict.dataset.decision = row.decision;
      const box = NLC.inLang(NLC.data.boxes[row.category]) || row.category;
      const sub = row.subcategory ? " / " + (NLC.inLang(NLC.data.boxes[row.subcategory]) || row.subcategory) : "";
      verdict.replaceChildren();
      const strong = document.createElement("strong");
      strong.textContent = NLC.word(row.decision);
      verdict.append(strong, " — " + box + sub);
      // nothing to ask but still undetermined: what is open waits for the investigator's review
      askStatus.textContent = !decided ? "" : NLC.word(row.decision === "undetermined" ? "form_review" : "form_decided");
    }
    for (const tr of document.querySelectorAll("#criteria tr[data-cid]")) {
      const result = row.criteria ? row.criteria[tr.dataset.cid] : null;
      const status = result ? result.status : "";
      tr.dataset.status = status;
      tr.querySelector(".status").textContent = status ? NLC.inLang(NLC.data.statuses[status]) : "";
      tr.querySelector(".reason").textContent = result ? result.reason + (result.decide ? " — " + result.decide : "") : "";
      // an open criterion cannot change an excluded candidate's outcome
      tr.classList.toggle("moot", row.decision === "excluded" && (status === "unknown" || status === "review"));
      tr.classList.toggle("primary", tr.dataset.cid === row.primary_criterion);
    }
    document.getElementById("save").disabled = row.decision === "error";
    lastPlan = plan;
    planned += 1;
    document.body.dataset.planned = String(planned);
  }

  async function replan(moveFocus) {
    const body = record();
    const mine = Symbol("plan");
    pending = mine;
    let response;
    try {
      response = await NLC.call("POST", "/form/plan?lang=" + NLC.lang, body);
    } catch (err) {
      NLC.showProblem(problem, String(err));
      return;
    }
    if (pending !== mine) return; // a later answer's plan is on its way
    if (!response.ok) {
      NLC.showProblem(problem, response.status + " " + ((await response.json()).error || ""));
      return;
    }
    NLC.showProblem(problem, "");
    const plan = await response.json();
    render(plan);
    if (moveFocus) {
      const first = askList.querySelector(".q.first [data-path]");
      if (first) first.focus();
      else if (plan.decided) document.getElementById("save").focus();
    }
  }

  async function save() {
    saveStatus.textContent = "";
    const response = await NLC.call("POST", "/screen?lang=" + NLC.lang, record());
    const answer = await response.json();
    if (!response.ok) {
      NLC.showProblem(problem, response.status + " " + (answer.error || ""));
      return;
    }
    saveStatus.textContent = NLC.word("form_saved");
    render({decision: answer, questions: lastPlan ? lastPlan.questions : [], decided: lastPlan ? lastPlan.decided : false});
  }

  async function resume(who) {
    const response = await NLC.call("POST", "/form/resume", who);
    const answer = await response.json();
    if (!response.ok) {
      NLC.showProblem(problem, response.status + " " + (answer.error || ""));
      return;
    }
    if (answer.record) {
      fill(answer.record);
      saveStatus.textContent = NLC.word("form_resumed");
    } else {
      saveStatus.textContent = NLC.word("form_no_record");
    }
    await replan(true);
  }

  // -- events -----------------------------------------------------------------------------------

  form.addEventListener("change", (event) => {
    saveStatus.textContent = "";
    const inList = event.target.closest(".entries");
    replan(!inList);
  });
  form.addEventListener("submit", (event) => {  // Enter in a field: screen again, never post the page
    event.preventDefault();
    replan(true);
  });
  form.addEventListener("click", (event) => {
    const add = event.target.closest("button.add");
    if (add) {
      const row = addEntry(add.closest(".list"));
      row.querySelector("[data-name]").focus();
      replan(false);
    }
    const remove = event.target.closest("button.remove");
    if (remove) {
      const list = remove.closest(".list");
      remove.closest("tr").remove();
      list.querySelector("button.add").focus();
      replan(false);
    }
  });
  document.getElementById("save").addEventListener("click", save);
  document.getElementById("new-candidate").addEventListener("click", () => {
    fill({});
    saveStatus.textContent = "";
    replan(false).then(() => {
      const first = askList.querySelector(".q [data-path]");
      if (first) first.focus();
    });
  });
  NLC.onLang(() => replan(false));

  document.addEventListener("DOMContentLoaded", () => {
    const opened = sessionStorage.getItem("nlc-screen-open");
    if (opened) {
      sessionStorage.removeItem("nlc-screen-open");
      resume(JSON.parse(opened));
    } else {
      replan(false).then(() => {
        const first = askList.querySelector(".q [data-path]");
        if (first && !document.querySelector("dialog[open]")) first.focus();
      });
    }
  });
})();
