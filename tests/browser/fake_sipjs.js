// FakeSessionManager: a stand-in for SIP.js's Web.SessionManager, served to the page instead of
// static/vendor/sip.js/index.js by tests/browser/test_softphone_desk.py. It registers at once and records
// what the softphone asks of the call; the test plays the other party through window.fakeSip (ring, answer,
// hang up) and reads the DTMF the page sent (dtmf: one entry per RTCDTMFSender.insertDTMF call).
"use strict";

class FakeSession {
  constructor(manager, caller) {
    this.remoteIdentity = { uri: { user: caller } };
    this.sessionDescriptionHandler = { sendDtmf: (tones) => { manager.dtmf.push(tones); return true; } };
  }
}

class FakeSessionManager {
  constructor(_server, options) {
    this.delegate = options.delegate;
    this.sessions = [];
    this.dialled = [];
    this.dtmf = [];
    this.held = false;
    this.refuseHold = false; // true: hold fails as a refused re-INVITE would
    window.fakeSip = this;
  }

  async connect() {}

  async register() { this.delegate.onRegistered(); }

  // -- what the softphone asks -------------------------------------------------------------------------------
  async call(target) {
    this.dialled.push(target);
    return this.open("");
  }

  async answer(session) { this.delegate.onCallAnswered(session); }

  async hangup(session) { this.delegate.onCallHangup(session); }

  isHeld() { return this.held; }

  async hold(session) {
    if (this.refuseHold) throw new Error("保持被拒绝");
    this.held = true;
    this.delegate.onCallHold(session, true);
  }

  async unhold(session) { this.held = false; this.delegate.onCallHold(session, false); }

  // -- the other party, played by the test -------------------------------------------------------------------
  open(caller) {
    const session = new FakeSession(this, caller);
    this.sessions.push(session);
    return session;
  }

  ring(caller) { this.delegate.onCallReceived(this.open(caller)); }

  answered() { this.delegate.onCallAnswered(this.sessions.at(-1)); }

  hungUp() { this.delegate.onCallHangup(this.sessions.at(-1)); }
}

export const Web = { SessionManager: FakeSessionManager };
