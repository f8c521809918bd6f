// nlc-screen web pages: what the form and the worklist share — the language switch, the token
// (asked once per browser tab when the service has tokens), and calls to the API.
// Plain JavaScript, no library, no build step. No candidate data ever goes into a URL.
"use strict";

const NLC = (() => {
  const data = JSON.parse(document.getElementById("nlc-data").textContent);
  const TOKEN_KEY = "nlc-screen-token";
  const LANG_KEY = "nlc-screen-lang";
  const listeners = [];
  let lang = sessionStorage.getItem(LANG_KEY) || "en";
  if (!data.languages.includes(lang)) lang = data.languages[0];

  function word(key) {
    const texts = data.words[key] || {};
    return texts[lang] || texts.en || key;
  }

  function inLang(texts) {
    return (texts && (texts[lang] || texts.en)) || "";
  }

  // Texts that cannot hold one element per language (a list's options): written in the chosen one.
  function wordsIn(root) {
    for (const el of root.querySelectorAll("option[data-word]")) {
      const text = word(el.dataset.word);
      el.textContent = el.value === "" ? "— " + text + " —" : text;
    }
  }

  function setLang(next, quiet) {
    lang = next;
    sessionStorage.setItem(LANG_KEY, lang);
    document.documentElement.dataset.ui = lang;
    document.documentElement.lang = lang === "zh" ? "zh-Hans" : lang;
    for (const button of document.querySelectorAll("[data-set-lang]")) {
      button.setAttribute("aria-pressed", String(button.dataset.setLang === lang));
    }
    wordsIn(document);
    if (!quiet) listeners.forEach((fn) => fn(lang));
  }

  let asking = null;
  function askToken(refused) {
    if (asking) return asking;
    const dialog = document.getElementById("token-dialog");
    const input = document.getElementById("token-input");
    dialog.querySelector(".token-bad").hidden = !refused;
    input.value = "";
    asking = new Promise((resolve) => {
      dialog.addEventListener("close", function done() {
        dialog.removeEventListener("close", done);
        const token = input.value.trim();
        asking = null;
        if (token) {
          sessionStorage.setItem(TOKEN_KEY, token);
          resolve(token);
        } else {
          resolve(askToken(refused));
        }
      });
      dialog.showModal();
      input.focus();
    });
    return asking;
  }

  async function token() {
    return sessionStorage.getItem(TOKEN_KEY) || askToken(false);
  }

  // One call to the API; with tokens configured, the token is asked for once and sent as a Bearer.
  async function call(method, path, body) {
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const headers = {"Accept": "application/json"};
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (data.auth) headers["Authorization"] = "Bearer " + (await token());
      else headers["X-Screener"] = "web form";
      const response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                          cache: "no-store", credentials: "same-origin"});
      if (response.status === 401 && data.auth) {
        sessionStorage.removeItem(TOKEN_KEY);
        await askToken(true);
        continue;
      }
      return response;
    }
    throw new Error("401");
  }

  function showProblem(element, text) {
    element.hidden = !text;
    element.textContent = text ? word("form_failed") + " " + text : "";
  }

  document.addEventListener("DOMContentLoaded", () => {
    setLang(lang, true);
    for (const button of document.querySelectorAll("[data-set-lang]")) {
      button.addEventListener("click", () => setLang(button.dataset.setLang));
    }
    if (data.auth && !sessionStorage.getItem(TOKEN_KEY)) askToken(false);
  });

  return {data, word, inLang, call, showProblem, wordsIn, get lang() { return lang; }, onLang: (fn) => listeners.push(fn)};
})();
