// The retry story, played against the running service. Vanilla JS, no build; data from the
// server is only ever set as text. (Django renders this file: no double braces in it.)
"use strict";
(() => {
  const config = JSON.parse(document.getElementById("story-config").textContent);
  const $ = (id) => document.getElementById(id);
  const buttons = {
    send: $("step-send"),
    without: $("step-retry-without"),
    with: $("step-retry-with"),
    reset: $("step-reset"),
  };
  let run = null; // { customerId, key }

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function newKey() {
    // A client makes its key once per operation and sends it with every retry.
    const bytes = crypto.getRandomValues(new Uint8Array(8));
    return "pay_" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function call(method, url, options = {}) {
    const headers = { Accept: "application/json", "X-CSRFToken": config.csrfToken };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    Object.assign(headers, options.headers || {});
    const response = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    let data = null;
    try { data = await response.json(); } catch (error) { data = null; }
    return { response, data };
  }

  async function startRun() {
    const { response, data } = await call("POST", config.runsUrl);
    if (!response.ok) throw new Error(`could not start a run: ${response.status}`);
    run = { customerId: data.customerId, key: newKey() };
    $("key").textContent = run.key;
  }

  function pay(side) {
    const headers = {};
    if (side === "with") headers[config.keyHeader] = run.key;
    const body = { customerId: run.customerId, amount: config.amount, currency: config.currency };
    return call("POST", side === "with" ? config.withUrl : config.withoutUrl, { headers, body });
  }

  function log(side, label, outcome, className) {
    const item = element("li");
    item.append(element("span", `${label} → `));
    item.append(element("span", outcome, className));
    $(`${side}-log`).append(item);
  }

  // Logs the answer; true when it is the one a verdict can be drawn from.
  function answered(side, label, { response, data }) {
    if (!response.ok) {
      const detail = data && (data.detail || data.title) ? `: ${data.detail || data.title}` : "";
      log(side, label, `${response.status}${detail}`, "error");
      return false;
    }
    const replayed = response.headers.get(config.replayedHeader) === "true";
    const what = replayed
      ? `${response.status}, ${config.replayedHeader}: true: payment ${data.paymentId}, the answer that was lost; nothing ran again`
      : `${response.status}, a new payment ${data.paymentId}`;
    log(side, label, what, replayed ? "replayed" : "status");
    return side === "with" ? replayed : true;
  }

  function ledger(side, charges) {
    $(`${side}-charges`).textContent = String(charges.length);
    const body = $(`${side}-ledger`);
    body.replaceChildren(...charges.map((charge) => {
      const row = element("tr");
      row.append(element("td", charge.chargeId));
      row.append(element("td", `${charge.amount} ${charge.currency}`));
      const key = charge.idempotencyKey;
      row.append(element("td", key ? `${key.slice(0, 12)}…` : "none"));
      return row;
    }));
  }

  function record(stored) {
    const list = $("record");
    if (!stored) {
      list.replaceChildren(element("dt", "state"), element("dd", "no record yet"));
      list.lastChild.id = "record-state";
      return;
    }
    const rows = [
      ["state", stored.state],
      ["scope", stored.scope],
      ["request", stored.request],
      ["fingerprint", `${stored.fingerprint.slice(0, 16)}…`],
      ["stored status", stored.responseStatus === null ? "none yet" : String(stored.responseStatus)],
      ["expires", new Date(stored.expiresAt).toLocaleString()],
    ];
    list.replaceChildren(...rows.flatMap(([name, value]) => [element("dt", name), element("dd", value)]));
    list.querySelectorAll("dd")[0].id = "record-state";
    if (stored.responseBody) {
      const body = element("dd");
      body.append(element("pre", stored.responseBody));
      list.append(element("dt", "stored body"), body);
    }
  }

  async function refresh() {
    const url = `${config.stateUrl.replace("CUSTOMER", encodeURIComponent(run.customerId))}?key=${encodeURIComponent(run.key)}`;
    const { response, data } = await call("GET", url);
    if (!response.ok) throw new Error(`could not read the ledger: ${response.status}`);
    ledger("without", data.ledger.without);
    ledger("with", data.ledger.with);
    record(data.record);
    return data;
  }

  function verdicts(state, retried) {
    const without = state.ledger.without.length;
    const withKey = state.ledger.with.length;
    $("without-verdict").textContent = retried.without && without > 1
      ? `${without} charges for one payment: the customer paid ${without === 2 ? "twice" : `${without} times`}.`
      : "";
    $("with-verdict").textContent = retried.with && withKey === 1
      ? "1 charge: the retry got the first answer back, and the customer paid once." : "";
  }

  let retried = { without: false, with: false };

  async function step(action) {
    Object.values(buttons).forEach((button) => { button.disabled = true; });
    $("story-error").textContent = "";
    try {
      await action();
    } catch (error) {
      $("story-error").textContent = String(error.message || error);
    }
    buttons.send.disabled = run !== null;
    buttons.without.disabled = run === null || $("without-log").children.length === 0;
    buttons.with.disabled = run === null || $("with-log").children.length === 0;
    buttons.reset.disabled = run === null;
  }

  buttons.send.addEventListener("click", () => step(async () => {
    if (run === null) await startRun();
    // Both servers get the payment and answer; the page drops both answers, like a timeout.
    const answers = await Promise.all([pay("without"), pay("with")]);
    const failed = answers.find(({ response }) => !response.ok);
    if (failed) {
      run = null; // this run is abandoned (signed out? refused?): the next click starts anew
      const { response, data } = failed;
      throw new Error(`The payment failed: ${response.status} ${(data && (data.detail || data.title)) || ""}`);
    }
    const label = "Send the payment";
    log("without", label, "no answer: timed out", "lost");
    log("with", label, "no answer: timed out", "lost");
    verdicts(await refresh(), retried);
  }));

  for (const side of ["without", "with"]) {
    buttons[side].addEventListener("click", () => step(async () => {
      retried[side] = answered(side, side === "with" ? "Retry, same key" : "Retry", await pay(side));
      verdicts(await refresh(), retried);
    }));
  }

  buttons.reset.addEventListener("click", () => step(async () => {
    run = null;
    retried = { without: false, with: false };
    for (const side of ["without", "with"]) {
      $(`${side}-log`).replaceChildren();
      ledger(side, []);
      $(`${side}-verdict`).textContent = "";
    }
    record(null);
    $("key").textContent = config.keyPlaceholder;
  }));

  buttons.send.disabled = !config.ready;
})();
