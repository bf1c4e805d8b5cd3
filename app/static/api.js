// Talking to the service: same origin only, the API key kept in this module's memory.
//
// The key lives in a variable of this module, nowhere else: never in localStorage,
// sessionStorage or a cookie, so it is gone when the tab closes or reloads.

let apiKey = null;

export function setApiKey(key) {
  apiKey = key || null;
}

export function hasApiKey() {
  return apiKey !== null;
}

// An answer other than 2xx, in the API's own words: {"error": {"code", "message"}}.
export class ApiError extends Error {
  constructor(status, code, message, retryAfterS, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
    this.requestId = requestId;
  }
}

async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (apiKey !== null) headers.Authorization = `Bearer ${apiKey}`;
  let response;
  try {
    response = await fetch(path, { method, headers, body, credentials: "omit" });
  } catch (err) {
    throw new ApiError(0, "network_error", `the service could not be reached (${err.message})`);
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (response.ok && payload !== null) return payload;
  const error = (payload && payload.error) || {};
  const retry = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  throw new ApiError(
    response.status,
    error.code || `http_${response.status}`,
    error.message || response.statusText || "the service gave no explanation",
    Number.isFinite(retry) ? retry : null,
    error.request_id || response.headers.get("X-Request-ID"),
  );
}

// The served models: GET /models, or GET /model (one model, no versions) where the
// service has no /models. Each entry is the API's, plus `query`: the parameters that
// pick it in /classify (none for the single model of /model).
export async function listModels() {
  try {
    const answer = await request("GET", "/models");
    return answer.models.map((model) => ({
      ...model,
      query: { model: model.name, version: String(model.version) },
    }));
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
  }
  const model = await request("GET", "/model");
  return [{ ...model, version: null, default: true, latest: true, ready: true, query: {} }];
}

// POST /classify for one file; resolves to the API's Classification.
export function classify(file, model, topK) {
  const params = new URLSearchParams({ ...model.query, top_k: String(topK) });
  const form = new FormData();
  form.append("file", file, file.name || "pasted-image");
  return request("POST", `/classify?${params}`, form);
}
