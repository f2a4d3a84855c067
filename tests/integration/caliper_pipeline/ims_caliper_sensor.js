// Sends one Caliper 1.1 SessionEvent (LoggedIn) with the npm `ims-caliper` sensor's own objects and HTTP client, as
// a Node sender would: entityFactory / eventFactory build the event, Sensor.createEnvelope the envelope (dataVersion
// from the package's config), the package's httpClient POSTs it with the given bearer token. The client reports the
// response only to the package's debug log (node ... --log writes caliper_js-debug.log in the working directory);
// this script waits for that line and prints {"eventId", "status"} as JSON.
// Usage: node ims_caliper_sensor.js <package dir> <endpoint url> <token> <actor id> --log
"use strict";
const fs = require("fs");
const path = require("path");

const [packageDir, endpoint, token, actorId] = process.argv.slice(2);
const lib = (name) => require(path.join(packageDir, "node_modules", "ims-caliper", "lib", name));
const moment = require(path.join(packageDir, "node_modules", "moment"));

const sensor = lib("sensor");
const client = lib("clients/httpClient");
const httpOptions = lib("clients/httpOptions");
const actions = lib("actions/actions");
const entityFactory = lib("entities/entityFactory");
const eventFactory = lib("events/eventFactory");
const Person = lib("entities/agent/person");
const SoftwareApplication = lib("entities/agent/softwareApplication");
const Session = lib("entities/session/session");
const SessionEvent = lib("events/sessionEvent");

const app = "https://example.edu";
const actor = entityFactory().create(Person, {id: actorId});
const edApp = entityFactory().create(SoftwareApplication, {id: app, version: "v2"});
const now = moment.utc();
const session = entityFactory().create(Session, {
  id: `${app}/sessions/1f6442a482de72ea6ad134943812bff564a76259`, user: actor.id, dateCreated: now,
  startedAtTime: now,
});
const event = eventFactory().create(SessionEvent, {
  actor: actor, action: actions.loggedIn.term, object: edApp, eventTime: now, edApp: edApp.id, session: session,
});

sensor.initialize(`${app}/sensors/ims-caliper-npm`);
client.initialize("gateway", Object.assign({}, httpOptions, {
  uri: endpoint, json: true,
  headers: Object.assign({}, httpOptions.headers, {Authorization: `Bearer ${token}`}),
}));
sensor.registerClient(client);
sensor.sendToClient(client, sensor.createEnvelope({data: [event]}));

const log = "caliper_js-debug.log";
const deadline = Date.now() + 20000;
const poll = setInterval(() => {
  const text = fs.existsSync(log) ? fs.readFileSync(log, "utf8") : "";
  const found = /Response status code: (\d+)/.exec(text);
  if (found || Date.now() > deadline) {
    clearInterval(poll);
    process.stdout.write(JSON.stringify({eventId: event.id, status: found ? Number(found[1]) : null}) + "\n");
    process.exit(found ? 0 : 1);
  }
}, 100);
