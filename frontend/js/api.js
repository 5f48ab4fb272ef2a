// The API client: tokens kept across reloads, a silent refresh when the access
// token expires, and errors that always carry the API's own message.
//
// Refresh tokens are single use: every refresh answers with a new one, and sending a
// spent one again ends the whole sign-in on the server (it looks like a stolen copy).
// Tabs share the session in localStorage, so a refresh takes a lock across tabs and
// first looks whether another tab has already refreshed.

export const STORAGE_KEY = "task-manager.session";
const REFRESH_LOCK = "task-manager.refresh";
// Per account name, the device token its last sign-in here gave: kept across sign-outs, so
// that this browser's next sign-in is slowed by its own wrong passwords alone, never by
// others guessing behind the same address.
export const DEVICES_KEY = "task-manager.devices";

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// Raised when the server cannot be reached at all (or a proxy answers for it).
export class OfflineError extends Error {}

export class Api {
  constructor(base, { onSessionEnd = () => {}, onOffline = () => {}, onOnline = () => {} } = {}) {
    this.base = (base || "").replace(/\/$/, "");
    this.onSessionEnd = onSessionEnd;
    this.onOffline = onOffline;
    this.onOnline = onOnline;
    this.session = loadSession();
    this.refreshing = null;
  }

  get user() {
    return this.session?.user ?? null;
  }

  async register(username, password) {
    return this.request("POST", "/api/auth/register", { username, password }, { auth: false });
  }

  async login(username, password) {
    const token = loadDevices()[deviceKey(username)];
    const credentials = { username, password };
    if (typeof token === "string") credentials.device_token = token;
    const body = await this.request("POST", "/api/auth/login", credentials, { auth: false });
    keepDevice(body);
    this.keep(body);
    return body.user;
  }

  // Ends the sign-in on the server with the refresh token alone, so an expired access
  // token does not matter. Returns false when the server could not be told (offline).
  async logout() {
    const session = loadSession() ?? this.session;
    this.clear();
    if (!session) return true;
    try {
      await this.send("POST", "/api/auth/logout", undefined, session.refresh);
    } catch (error) {
      // 401: the sign-in had already ended on the server (expired, revoked): nothing to do.
      return error instanceof ApiError;
    }
    return true;
  }

  // Every device of this user is signed out, this one too.
  async logoutAll() {
    await this.request("POST", "/api/auth/logout-all");
    this.clear();
  }

  async changePassword(currentPassword, newPassword) {
    const body = await this.request("POST", "/api/auth/password", {
      current_password: currentPassword,
      new_password: newPassword,
    });
    keepDevice(body); // the change ended every device token's trust but this new one
    this.keep(body);
    return body.user;
  }

  // Another tab signed in, refreshed or signed out: take over what it stored.
  adoptStored() {
    this.session = loadSession();
    return this.session;
  }

  keep(body) {
    this.session = { access: body.access_token, refresh: body.refresh_token, user: body.user };
    saveSession(this.session);
  }

  clear() {
    this.session = null;
    localStorage.removeItem(STORAGE_KEY);
  }

  async health() {
    return this.request("GET", "/health", undefined, { auth: false });
  }

  listTasks(params) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") query.set(key, value);
    }
    return this.request("GET", `/api/tasks?${query}`);
  }

  createTask(fields) {
    return this.request("POST", "/api/tasks", fields);
  }

  updateTask(id, fields) {
    return this.request("PATCH", `/api/tasks/${encodeURIComponent(id)}`, fields);
  }

  deleteTask(id) {
    return this.request("DELETE", `/api/tasks/${encodeURIComponent(id)}`);
  }

  clearCompleted() {
    return this.request("DELETE", "/api/tasks?status=completed");
  }

  async request(method, path, body, { auth = true } = {}) {
    if (!auth) return this.send(method, path, body, null);
    if (!this.session) throw new ApiError(401, "token_missing", "ログインしてください");
    try {
      return await this.send(method, path, body, this.session.access);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) throw error;
      await this.refresh();
      return this.send(method, path, body, this.session.access);
    }
  }

  // One refresh at a time, however many requests (or tabs) found the token expired.
  async refresh() {
    if (!this.refreshing) {
      const stale = this.session;
      const run = () => this.refreshOnce(stale);
      const locked = navigator.locks ? navigator.locks.request(REFRESH_LOCK, run) : run();
      this.refreshing = locked.finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  async refreshOnce(stale) {
    const stored = loadSession();
    if (stored && stale && stored.refresh !== stale.refresh && stored.user?.id === stale.user?.id) {
      this.session = stored; // another tab refreshed meanwhile: its tokens are the live ones
      return;
    }
    const session = stored ?? stale;
    try {
      const body = await this.send("POST", "/api/auth/refresh", undefined, session?.refresh);
      this.keep(body);
    } catch (error) {
      if (error instanceof ApiError) {
        this.clear();
        this.onSessionEnd("セッションの有効期限が切れました。もう一度ログインしてください");
      }
      throw error;
    }
  }

  async send(method, path, body, token) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      this.onOffline();
      throw new OfflineError("サーバーに接続できません");
    }
    const isJson = (response.headers.get("Content-Type") || "").includes("application/json");
    if (!isJson && response.status >= 500) {
      // nginx answers 502/504 itself when the API is down: that is "offline", not an API error.
      this.onOffline();
      throw new OfflineError("サーバーに接続できません");
    }
    this.onOnline();
    const data = response.status === 204 ? null : isJson ? await response.json() : null;
    if (!response.ok) {
      throw new ApiError(
        response.status,
        data?.error ?? "http_error",
        data?.message ?? `エラーが発生しました (HTTP ${response.status})`,
        response.headers.get("Retry-After"),
      );
    }
    return data;
  }
}

function loadSession() {
  try {
    const session = JSON.parse(localStorage.getItem(STORAGE_KEY));
    return session?.access && session?.refresh ? session : null;
  } catch {
    return null;
  }
}

// The name as the API compares it (NFKC, lower case): Alice and ａｌｉｃｅ are one account.
function deviceKey(username) {
  return String(username).normalize("NFKC").toLowerCase();
}

function keepDevice(body) {
  if (!body.device_token || !body.user) return;
  const devices = loadDevices();
  devices[deviceKey(body.user.username)] = body.device_token;
  localStorage.setItem(DEVICES_KEY, JSON.stringify(devices));
}

function loadDevices() {
  try {
    const devices = JSON.parse(localStorage.getItem(DEVICES_KEY));
    return devices && typeof devices === "object" && !Array.isArray(devices) ? devices : {};
  } catch {
    return {};
  }
}

function saveSession(session) {
  localStorage.setItem(STORAGE_KEY, JSON.stringify(session));
}
