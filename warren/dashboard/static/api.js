// The dashboard's calls to the cluster, through its own server's /api proxy (same origin, cookie).

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function call(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") {
    init.headers["X-Warren-Dashboard"] = "1"; // the proxy's CSRF check: other sites cannot send it
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  const response = await fetch("/api" + path, init);
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok) {
    const message = data && data.message ? data.message : `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return data;
}

const seg = (name) => encodeURIComponent(name);

export const api = {
  cluster: () => call("GET", "/v1/cluster"),
  nodes: () => call("GET", "/v1/nodes"),
  services: () => call("GET", "/v1/services"),
  tasks: () => call("GET", "/v1/tasks"),
  events: (since) => call("GET", `/v1/events?since=${encodeURIComponent(since)}`),
  scale: (name, replicas) => call("PATCH", `/v1/services/${seg(name)}`, { replicas }),
  rollback: (name) => call("POST", `/v1/services/${seg(name)}/rollback`),
};
