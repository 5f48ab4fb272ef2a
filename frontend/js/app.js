// The task board. User text is only ever set with textContent, never as HTML.

import { Api, ApiError, OfflineError, STORAGE_KEY } from "./api.js";

const PER_PAGE = 100;
const FILTERS = {
  all: undefined,
  active: "active",
  completed: "completed",
};
const SORTS = ["-created_at", "created_at", "due_date", "-priority"];
const PRIORITY_LABEL = { low: "優先度: 低", medium: "優先度: 中", high: "優先度: 高" };
const HEALTH_POLL_MS = 3000;

const $ = (selector) => document.querySelector(selector);

const state = {
  filter: "all",
  sort: "-created_at",
  q: "",
  tasks: [],
  total: 0,
  page: 1,
  authMode: "login",
  offline: false,
  healthTimer: null,
};

const api = new Api(window.TASK_MANAGER_CONFIG?.apiBase ?? "", {
  onSessionEnd: (message) => showAuth(message),
  onOffline: () => setOffline(true),
  onOnline: () => setOffline(false),
});

// ---- URL state: filter, search and sort survive a reload ----------------------------

function readUrl() {
  const params = new URLSearchParams(location.search);
  const filter = params.get("filter");
  state.filter = filter in FILTERS ? filter : "all";
  const sort = params.get("sort");
  state.sort = SORTS.includes(sort) ? sort : "-created_at";
  state.q = (params.get("q") || "").slice(0, 200);
}

function writeUrl() {
  const params = new URLSearchParams();
  if (state.filter !== "all") params.set("filter", state.filter);
  if (state.sort !== "-created_at") params.set("sort", state.sort);
  if (state.q) params.set("q", state.q);
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
}

// ---- Messages -------------------------------------------------------------------------

// The API's own message is shown as it is (429 already says how long to wait).
function showError(target, error) {
  target.textContent = error ? error.message || "エラーが発生しました" : "";
}

function setOffline(offline) {
  if (state.offline === offline) return;
  state.offline = offline;
  $("#offline").hidden = !offline;
  if (offline && !state.healthTimer) {
    state.healthTimer = setInterval(async () => {
      try {
        await api.health();
      } catch {
        return; // still down; try again on the next tick
      }
      clearInterval(state.healthTimer);
      state.healthTimer = null;
      setOffline(false);
      if (api.user) loadTasks().catch(handleBoardError);
    }, HEALTH_POLL_MS);
  }
}

// ---- Sign in and register ----------------------------------------------------------------

function showAuth(message = "") {
  closePasswordForm();
  $("#board-notice").textContent = "";
  $("#board-view").hidden = true;
  $("#auth-view").hidden = false;
  setAuthMode("login");
  $("#auth-error").textContent = message;
  $("#auth-password").value = "";
  $("#auth-username").focus();
}

function setAuthMode(mode) {
  state.authMode = mode;
  const login = mode === "login";
  $("#tab-login").setAttribute("aria-selected", String(login));
  $("#tab-register").setAttribute("aria-selected", String(!login));
  $("#auth-submit").textContent = login ? "ログイン" : "登録してログイン";
  $("#auth-password").autocomplete = login ? "current-password" : "new-password";
  $("#auth-hint").hidden = login;
  $("#auth-error").textContent = "";
}

async function submitAuth(event) {
  event.preventDefault();
  const username = $("#auth-username").value.trim();
  const password = $("#auth-password").value;
  if (!username || !password) {
    $("#auth-error").textContent = "ユーザー名とパスワードを入力してください";
    return;
  }
  const button = $("#auth-submit");
  button.disabled = true;
  try {
    if (state.authMode === "register") await api.register(username, password);
    await api.login(username, password);
    $("#auth-password").value = "";
    await showBoard();
  } catch (error) {
    showError($("#auth-error"), error);
  } finally {
    button.disabled = false;
  }
}

// ---- The board ---------------------------------------------------------------------------

async function showBoard() {
  $("#auth-view").hidden = true;
  $("#board-view").hidden = false;
  $("#current-user").textContent = api.user?.username ?? "";
  $("#search").value = state.q;
  $("#sort").value = state.sort;
  renderFilters();
  await loadTasks();
  $("#new-title").focus();
}

function handleBoardError(error) {
  if (error instanceof OfflineError) return; // the banner says it
  if (error instanceof ApiError && error.status === 401 && !api.user) return; // back at the sign-in form
  showError($("#board-error"), error);
}

async function loadTasks({ append = false } = {}) {
  const page = append ? state.page + 1 : 1;
  const body = await api.listTasks({
    status: FILTERS[state.filter],
    q: state.q,
    sort: state.sort,
    page,
    per_page: PER_PAGE,
  });
  state.page = page;
  state.tasks = append ? [...state.tasks, ...body.tasks] : body.tasks;
  state.total = body.total;
  state.counts = body.counts;
  showError($("#board-error"), null);
  render();
}

function renderFilters() {
  for (const link of document.querySelectorAll("[data-filter]")) {
    const current = link.dataset.filter === state.filter;
    link.classList.toggle("selected", current);
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function today() {
  const now = new Date();
  const pad = (n) => String(n).padStart(2, "0");
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

function render() {
  const list = $("#task-list");
  list.replaceChildren(...state.tasks.map(renderTask));
  $("#empty").hidden = state.tasks.length > 0;
  $("#more").hidden = state.tasks.length >= state.total;
  const counts = state.counts || {};
  const remaining = (counts.pending || 0) + (counts.in_progress || 0);
  $("#remaining").textContent = `残り ${remaining} 件`;
  $("#clear-completed").hidden = !counts.completed;
}

function renderTask(task) {
  const item = $("#task-template").content.firstElementChild.cloneNode(true);
  item.dataset.id = task.id;
  const overdue = task.due_date && task.status !== "completed" && task.due_date < today();
  item.classList.toggle("completed", task.status === "completed");
  item.classList.toggle("overdue", Boolean(overdue));

  const toggle = item.querySelector(".toggle");
  toggle.checked = task.status === "completed";
  toggle.setAttribute("aria-label", `「${task.title}」を完了にする`);
  toggle.addEventListener("change", () =>
    update(task, { status: toggle.checked ? "completed" : "pending" }),
  );

  item.querySelector(".title").textContent = task.title;
  item.querySelector(".overdue-badge").hidden = !overdue;
  const description = item.querySelector(".description");
  description.textContent = task.description || "";
  description.hidden = !task.description;
  item.querySelector(".priority").textContent = PRIORITY_LABEL[task.priority] ?? task.priority;
  item.querySelector(".priority").dataset.priority = task.priority;
  item.querySelector(".due").textContent = task.due_date ? `期限: ${task.due_date}` : "";

  const status = item.querySelector(".status");
  status.value = task.status;
  status.setAttribute("aria-label", `「${task.title}」の状態`);
  status.addEventListener("change", () => update(task, { status: status.value }));

  const edit = item.querySelector(".edit");
  edit.setAttribute("aria-label", `「${task.title}」を編集`);
  edit.addEventListener("click", () => startEdit(item, task));
  item.querySelector(".title").addEventListener("dblclick", () => startEdit(item, task));

  const remove = item.querySelector(".delete");
  remove.setAttribute("aria-label", `「${task.title}」を削除`);
  remove.addEventListener("click", async () => {
    if (!confirm(`「${task.title}」を削除しますか？`)) return;
    try {
      await api.deleteTask(task.id);
      await loadTasks();
    } catch (error) {
      handleBoardError(error);
    }
  });
  return item;
}

async function update(task, fields) {
  try {
    await api.updateTask(task.id, fields);
    await loadTasks();
  } catch (error) {
    handleBoardError(error);
    render(); // put the controls back to what the server has
  }
}

function startEdit(item, task) {
  const form = document.createElement("form");
  form.className = "edit-form";
  form.setAttribute("aria-label", "タスクを編集");
  const field = (labelText, control) => {
    const label = document.createElement("label");
    label.textContent = labelText;
    label.append(control);
    return label;
  };
  const title = Object.assign(document.createElement("input"), { value: task.title, maxLength: 200 });
  title.className = "edit-title";
  const description = Object.assign(document.createElement("textarea"), {
    value: task.description || "",
    rows: 2,
    maxLength: 5000,
  });
  description.className = "edit-description";
  const priority = document.createElement("select");
  priority.className = "edit-priority";
  for (const [value, text] of [["low", "低"], ["medium", "中"], ["high", "高"]]) {
    priority.append(new Option(text, value, false, value === task.priority));
  }
  const due = Object.assign(document.createElement("input"), { type: "date", value: task.due_date || "" });
  due.className = "edit-due";
  const save = Object.assign(document.createElement("button"), { type: "submit", textContent: "保存" });
  save.className = "primary";
  const cancel = Object.assign(document.createElement("button"), { type: "button", textContent: "キャンセル" });
  form.append(
    field("タイトル", title),
    field("説明", description),
    field("優先度", priority),
    field("期限", due),
    save,
    cancel,
  );

  const view = item.querySelector(".view");
  const close = () => {
    form.remove();
    view.hidden = false;
    item.querySelector(".edit").focus();
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api.updateTask(task.id, {
        title: title.value,
        description: description.value || null,
        priority: priority.value,
        due_date: due.value || null,
      });
      await loadTasks();
    } catch (error) {
      handleBoardError(error);
    }
  });
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      close();
    }
  });
  cancel.addEventListener("click", close);
  view.hidden = true;
  item.append(form);
  title.focus();
  title.select();
}

// The form's fields and what each sends; the request may take a while, and a person
// may type the next task meanwhile: only what was sent is cleared when it is saved.
const NEW_TASK_FIELDS = {
  title: "#new-title",
  description: "#new-description",
  priority: "#new-priority",
  due_date: "#new-due",
};

function clearIfUnchanged(field, sent) {
  if (field.value !== sent) return;
  if (field instanceof HTMLSelectElement) {
    const initial = [...field.options].find((option) => option.defaultSelected) ?? field.options[0];
    field.value = initial.value;
  } else {
    field.value = field.defaultValue;
  }
}

async function addTask(event) {
  event.preventDefault();
  const fields = Object.fromEntries(Object.entries(NEW_TASK_FIELDS).map(([name, selector]) => [name, $(selector)]));
  const sent = Object.fromEntries(Object.entries(fields).map(([name, field]) => [name, field.value]));
  if (!sent.title.trim()) {
    $("#board-error").textContent = "タイトルを入力してください";
    fields.title.focus();
    return;
  }
  try {
    await api.createTask({
      title: sent.title,
      description: sent.description || null,
      priority: sent.priority,
      due_date: sent.due_date || null,
    });
    for (const [name, field] of Object.entries(fields)) clearIfUnchanged(field, sent[name]);
    await loadTasks();
    // Back to the title for the next task, unless the person is already typing in another field.
    const typingElsewhere = Object.values(fields).some((field) => field !== fields.title && field === document.activeElement);
    if (!typingElsewhere) fields.title.focus();
  } catch (error) {
    handleBoardError(error);
  }
}

// ---- Sign out, everywhere, and the password -------------------------------------------

async function logout() {
  const told = await api.logout();
  // Offline, the server could not be told: say so, the sign-in may still be alive there.
  showAuth(
    told
      ? "ログアウトしました"
      : "ログアウトしました (サーバーに接続できず、サーバー側のセッションは残っている可能性があります)",
  );
}

async function logoutEverywhere() {
  if (!confirm("すべての端末 (この端末を含む) からログアウトしますか？")) return;
  try {
    await api.logoutAll();
    showAuth("すべての端末からログアウトしました");
  } catch (error) {
    handleBoardError(error);
  }
}

function openPasswordForm() {
  $("#password-form").hidden = false;
  $("#password-toggle").setAttribute("aria-expanded", "true");
  $("#password-error").textContent = "";
  $("#current-password").focus();
}

function closePasswordForm() {
  $("#password-form").reset();
  $("#password-form").hidden = true;
  $("#password-toggle").setAttribute("aria-expanded", "false");
}

async function changePassword(event) {
  event.preventDefault();
  const current = $("#current-password").value;
  const next = $("#new-password").value;
  if (!current || !next) {
    $("#password-error").textContent = "現在のパスワードと新しいパスワードを入力してください";
    return;
  }
  const button = event.submitter ?? $("#password-form button[type=submit]");
  button.disabled = true;
  try {
    await api.changePassword(current, next);
    closePasswordForm();
    $("#board-notice").textContent = "パスワードを変更しました。ほかの端末はログアウトされました";
    $("#password-toggle").focus();
  } catch (error) {
    if (error instanceof OfflineError || (error instanceof ApiError && error.status === 401 && !api.user)) {
      handleBoardError(error);
    } else {
      showError($("#password-error"), error);
    }
  } finally {
    button.disabled = false;
  }
}

// Another tab signed in, refreshed or signed out: follow it.
function followOtherTabs(event) {
  if (event.key !== STORAGE_KEY) return;
  const session = api.adoptStored();
  const onBoard = !$("#board-view").hidden;
  if (!session) {
    if (onBoard) showAuth("ログアウトしました");
  } else if (!onBoard || session.user?.username !== $("#current-user").textContent) {
    showBoard().catch(handleBoardError);
  }
}

function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function wire() {
  $("#tab-login").addEventListener("click", () => setAuthMode("login"));
  $("#tab-register").addEventListener("click", () => setAuthMode("register"));
  $("#auth-form").addEventListener("submit", submitAuth);
  $("#add-form").addEventListener("submit", addTask);
  // Enter in the description adds too; Shift+Enter makes a new line.
  $("#new-description").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("#add-form").requestSubmit();
    }
  });
  $("#logout").addEventListener("click", logout);
  $("#logout-all").addEventListener("click", logoutEverywhere);
  $("#password-toggle").addEventListener("click", () =>
    $("#password-form").hidden ? openPasswordForm() : closePasswordForm(),
  );
  $("#password-cancel").addEventListener("click", closePasswordForm);
  $("#password-form").addEventListener("submit", changePassword);
  $("#password-form").addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      closePasswordForm();
      $("#password-toggle").focus();
    }
  });
  window.addEventListener("storage", followOtherTabs);
  for (const link of document.querySelectorAll("[data-filter]")) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      state.filter = link.dataset.filter;
      writeUrl();
      renderFilters();
      loadTasks().catch(handleBoardError);
    });
  }
  $("#search").addEventListener(
    "input",
    debounce(() => {
      state.q = $("#search").value.trim().slice(0, 200);
      writeUrl();
      loadTasks().catch(handleBoardError);
    }, 250),
  );
  $("#sort").addEventListener("change", () => {
    state.sort = $("#sort").value;
    writeUrl();
    loadTasks().catch(handleBoardError);
  });
  $("#more").addEventListener("click", () => loadTasks({ append: true }).catch(handleBoardError));
  $("#clear-completed").addEventListener("click", async () => {
    if (!confirm("完了したタスクをすべて削除しますか？")) return;
    try {
      await api.clearCompleted();
      await loadTasks();
    } catch (error) {
      handleBoardError(error);
    }
  });
}

async function start() {
  readUrl();
  wire();
  setAuthMode("login");
  if (!api.user) {
    showAuth();
    return;
  }
  try {
    await showBoard();
  } catch (error) {
    handleBoardError(error);
  }
}

start();
