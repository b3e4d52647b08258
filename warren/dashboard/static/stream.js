// The live event stream (Server-Sent Events through the proxy). EventSource reconnects by itself and
// sends Last-Event-ID; when it gives up (the dashboard's server was down, or answered an error), a new
// one is opened after a pause, resuming from the last id seen.

const TYPES = ["leader", "manager", "node", "task", "service", "secret", "config", "certificate"];
const RETRY_MS = 1000;

function key(id) { return id.split(".").map(Number); }
function newer(a, b) {
  const [ai, ao] = key(a), [bi, bo] = key(b);
  return ai > bi || (ai === bi && ao > bo);
}

export class EventStream {
  // handlers: onEvent(event), onGap(data), onState("live" | "down" | "connecting"), onResume()
  constructor(handlers, since = "0.0") {
    this.handlers = handlers;
    this.lastId = null;
    this.since = since;
    this.source = null;
    this.wasDown = false;
  }

  start() {
    const since = this.lastId !== null ? this.lastId : this.since;
    const source = new EventSource(`/api/v1/events?follow=true&since=${encodeURIComponent(since)}`);
    this.source = source;
    this.handlers.onState("connecting");
    source.onopen = () => {
      this.handlers.onState("live");
      if (this.wasDown) { this.wasDown = false; this.handlers.onResume(); }
    };
    const take = (message) => {
      // Ids are "<log index>.<ordinal>", in order; one seen already (a resumed stream) is skipped.
      if (message.lastEventId) {
        if (this.lastId !== null && !newer(message.lastEventId, this.lastId)) return;
        this.lastId = message.lastEventId;
      }
      let event;
      try { event = JSON.parse(message.data); } catch { return; }
      this.handlers.onEvent(event);
    };
    for (const type of TYPES) source.addEventListener(type, take);
    source.onmessage = take;
    // A gap: events the manager no longer holds; an overflow: this reader fell too far behind (the
    // stream ends, and EventSource resumes it from its last id). Either way the lists are read again.
    for (const kind of ["gap", "overflow"]) {
      source.addEventListener(kind, (message) => {
        let data = {};
        try { data = JSON.parse(message.data); } catch { data = {}; }
        this.handlers.onGap(kind, data);
      });
    }
    source.onerror = () => {
      this.wasDown = true;
      this.handlers.onState("down");
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        setTimeout(() => { if (this.source === source) this.start(); }, RETRY_MS);
      }
    };
  }
}
