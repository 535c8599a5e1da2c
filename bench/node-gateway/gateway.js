// bench/run's Node.js target: step 03's gateway as the workshop's Node.js
// original built it, on Express and express-http-proxy, doing what the Rust
// gateway does on the benchmark's path (the API key, /service1/... passed on
// with a deadline). Not part of the workshop: bench/run starts it when node
// is on PATH.
//
//     node gateway.js <port> <service1 URL> <API key>

const http = require("node:http");
const express = require("express");
const proxy = require("express-http-proxy");

const [port, service1, apiKey] = process.argv.slice(2);
if (!port || !service1 || !apiKey) {
  console.error("usage: node gateway.js <port> <service1 URL> <API key>");
  process.exit(2);
}

// express-http-proxy asks for a new connection per call ("Connection:
// close") and passes that on to the client; with kept-alive connections
// both ways, as the Rust gateway and nginx have, the comparison is fair.
// (Its own `timeout` option then leaks a listener per call on the kept
// connection: the deadline is an AbortSignal instead.)
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });
const options = {
  proxyReqOptDecorator(request) {
    request.agent = keepAlive;
    request.headers.connection = "keep-alive";
    request.signal = AbortSignal.timeout(2000);
    return request;
  },
  userResHeaderDecorator(headers) {
    delete headers.connection;
    return headers;
  },
};

const app = express();
app.use((request, response, next) => {
  if (request.get("authorization") === `Bearer ${apiKey}`) return next();
  response.status(401).type("application/problem+json").send({ status: 401 });
});
// Mounted at /service1, the proxy sees (and sends on) the rest of the path.
app.use("/service1", proxy(service1, options));
app.listen(Number(port), "127.0.0.1");
