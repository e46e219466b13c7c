// An ingress-like proxy, as Home Assistant's Supervisor does it: the browser talks to
// /api/hassio_ingress/<token>/…; the prefix is stripped, the request forwarded to HomeIQ with
// `X-Ingress-Path: /api/hassio_ingress/<token>`, and the answer streamed back (SSE included).
// Requests outside the prefix are answered 404 and recorded.
import http from "node:http";

export function startIngressProxy({ target, token }) {
  const prefix = `/api/hassio_ingress/${token}`;
  const outside = [];
  const upstream = new URL(target);
  const server = http.createServer((req, res) => {
    if (req.url !== prefix && !req.url.startsWith(`${prefix}/`)) {
      outside.push(`${req.method} ${req.url}`);
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("outside the ingress prefix");
      return;
    }
    const path = req.url.slice(prefix.length) || "/";
    // as Home Assistant's ingress: the browser's host goes on as X-Forwarded-Host (HomeIQ checks a
    // write's Origin against it when the request comes from the trusted gateway)
    const headers = { ...req.headers, host: upstream.host, "x-ingress-path": prefix, "x-forwarded-host": req.headers.host };
    const fwd = http.request(
      { hostname: upstream.hostname, port: upstream.port, method: req.method, path, headers, agent: false },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    fwd.on("error", (e) => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
      res.end(`proxy error: ${e.message}`);
    });
    req.pipe(fwd);
    res.on("close", () => fwd.destroy());
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      resolve({ url: `http://127.0.0.1:${port}${prefix}/`, origin: `http://127.0.0.1:${port}`, prefix, outside, close: () => server.close() });
    });
  });
}
