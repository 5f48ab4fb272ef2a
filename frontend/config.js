// Where the page finds the API. "" means the same origin: in production nginx
// serves this page and proxies /api and /health to the API, so nothing to set.
// For the manual's development setup (this folder served by
// `python -m http.server 8080`, the API by `python run.py` on 5000), set
// apiBase to "http://localhost:5000" (the API allows that origin in development).
window.TASK_MANAGER_CONFIG = {
  apiBase: "",
};
