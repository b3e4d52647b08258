// The live event stream (Server-Sent Events through the proxy). EventSource reconnects by itself and
// sends Last-Event-ID; when it gives up (the dashboard's server was down, or answered an error), a new
// one is opened after a pause, resuming from the last id seen.

const TYPES = ["leader", "manager", "node", "task", "service", "secret", "config", "certificate"];
const RETRY_MS = 1000;

export class EventStream {
  // handlers: onEvent(event), onGap(data), onState("live" | "down" | "connecting"), onResume()
  constructor(handlers, since = "0") {
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
      if (message.lastEventId) this.lastId = message.lastEventId;
      let event;
      try { event = JSON.parse(message.data); } catch { return; }
      this.handlers.onEvent(event);
    };
    for (const type of TYPES) source.addEventListener(type, take);
    source.onmessage = take;
    source.addEventListener("gap", (message) => {
      if (message.lastEventId) this.lastId = message.lastEventId;
      let data = {};
      try { data = JSON.parse(message.data); } catch { data = {}; }
      this.handlers.onGap(data);
    });
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
