// 浏览器软电话 (WebRTC, SIP.js served from static/vendor): the agent's own extension on the workspace, a
// supervisor's on the 班长席 page (listen / whisper / barge ring it), or the administrators' test phone calling
// 12345. The SIP account is fetched over the logged-in session and kept in memory only: it is never shown. Its
// password is issued for this fetch and expires after expires_in_s: the page fetches a new one before that and
// registers again with it. After an agent's call the workspace goes to 话后整理 and, after wrap_up_s, to 示闲,
// through the page's own status buttons (QueuePause with a reason on the server).
// Other scripts of the page send DTMF in the call with a "softphone:dtmf" event on #softphone (detail: {tones}).
"use strict";

const STATES = {
  offline: "未注册", connecting: "连接中…", registered: "空闲", ringing: "来电振铃",
  calling: "呼叫中…", talking: "通话中", held: "保持中", error: "不可用",
};

const CALL_STATES = ["ringing", "calling", "talking", "held"];
const $ = (root, sel) => root.querySelector(sel);
const RENEW_AT = 0.8; // share of the password's life after which a new one is fetched

class Softphone {
  constructor(root) {
    this.root = root;
    this.mode = root.dataset.mode; // agent | supervisor | test
    this.session = null;
    this.phase = null; // the call's state while one is up (ringing, calling, talking, held)
    this.manager = null;
    this.wrapUpTimer = null;
    this.levelTimer = null;
    this.renewTimer = null;
  }

  show(state, detail = "") {
    if (CALL_STATES.includes(state)) this.phase = state;
    this.root.dataset.state = state;
    $(this.root, "#sp-status").textContent = detail ? `${STATES[state]}：${detail}` : STATES[state];
    const inCall = CALL_STATES.includes(state);
    $(this.root, "#sp-answer").hidden = !(state === "ringing" && this.mode !== "test");
    $(this.root, "#sp-hangup").disabled = !inCall;
    for (const id of ["#sp-hold", "#sp-mute"]) $(this.root, id).disabled = !["talking", "held"].includes(state);
    this.root.querySelectorAll(".dialpad button").forEach((b) => { b.disabled = !["talking", "held"].includes(state); });
    const call = $(this.root, "#sp-call");
    if (call) call.disabled = state !== "registered";
  }

  // The registration's state or an error, on the status line only while a call is up: its buttons stay.
  report(state, detail = "") {
    this.show(this.phase ?? state, detail);
  }

  async fetchAccount() {
    const account = await window.hotline.api("GET", this.root.dataset.account);
    this.account = account;
    clearTimeout(this.renewTimer);
    this.renewTimer = setTimeout(() => this.renew(), account.expires_in_s * RENEW_AT * 1000);
    return account;
  }

  // A fresh password before the current one expires, and a REGISTER with it (SIP.js reads the password at every
  // challenge); data-renewals counts the accepted ones.
  async renew() {
    try {
      const account = await this.fetchAccount();
      this.manager.userAgent.configuration.authorizationPassword = account.password;
      await new Promise((resolve, reject) => {
        const requestDelegate = {
          onAccept: resolve,
          onReject: (response) => reject(new Error(`注册被拒绝（${response.message.statusCode}）`)),
        };
        this.manager.registerer.register({ requestDelegate }).catch(reject); // this REGISTER only
      });
      this.root.dataset.renewals = String(Number(this.root.dataset.renewals || 0) + 1);
    } catch (err) {
      this.report("error", err.message);
      this.renewTimer = setTimeout(() => this.renew(), 10_000); // try again soon, before it expires
    }
  }

  async start() {
    this.show("connecting");
    let account;
    try {
      account = await this.fetchAccount();
    } catch (err) {
      this.show("error", err.message);
      return;
    }
    $(this.root, "#sp-ext").textContent = account.extension === "test-phone" ? "" : `分机 ${account.extension}`;
    const { Web } = await import(this.root.dataset.sipjs);
    this.manager = new Web.SessionManager(account.ws_url, {
      aor: account.uri,
      media: { constraints: { audio: true, video: false }, remote: { audio: $(this.root, "#sp-audio") } },
      sendDTMFUsingSessionDescriptionHandler: true,
      registrationRetry: true,
      reconnectionAttempts: 1000,
      userAgentOptions: {
        authorizationUsername: account.extension,
        authorizationPassword: account.password,
        displayName: account.display_name,
        logBuiltinEnabled: false,
      },
      delegate: {
        onRegistered: () => this.report("registered"),
        onUnregistered: () => this.report("offline"),
        onServerDisconnect: () => this.report("offline"),
        onCallReceived: (session) => this.ringing(session),
        onCallAnswered: () => this.answered(),
        onCallHangup: () => this.ended(),
        onCallHold: (_session, held) => this.held(held),
      },
    });
    this.bindButtons();
    try {
      await this.manager.connect();
      await this.manager.register();
    } catch (err) {
      this.show("error", err.message);
    }
  }

  bindButtons() {
    const on = (id, fn) => $(this.root, id)?.addEventListener("click", () => fn().catch((err) => this.report("error", err.message)));
    on("#sp-answer", () => this.manager.answer(this.session));
    on("#sp-hangup", () => this.manager.hangup(this.session));
    on("#sp-hold", () => (this.manager.isHeld(this.session) ? this.manager.unhold(this.session) : this.manager.hold(this.session)));
    on("#sp-mute", async () => {
      const mute = !this.manager.isMuted(this.session);
      if (mute) this.manager.mute(this.session); else this.manager.unmute(this.session);
      $(this.root, "#sp-mute").setAttribute("aria-pressed", String(mute));
    });
    on("#sp-call", async () => {
      $(this.root, "#sp-caller").textContent = this.root.dataset.dial;
      this.show("calling");
      try {
        this.session = await this.manager.call(`sip:${this.root.dataset.dial}@${this.account.uri.split("@")[1]}`);
      } catch (err) {
        this.phase = null; // no call came of it
        throw err;
      }
    });
    this.root.querySelectorAll(".dialpad button").forEach((b) => on(`#${b.id}`, () => this.sendTones(b.dataset.tone)));
    this.root.addEventListener("softphone:dtmf", (ev) => this.sendTones(ev.detail.tones).catch((err) => this.report("error", err.message)));
  }

  // DTMF in the call (RFC 4733, the session's RTCDTMFSender, as SIP.js's sendDTMF does for one tone): a feature
  // code such as *2 goes as one string, its digits one after the other within Asterisk's featuredigittimeout.
  async sendTones(tones) {
    if (!this.session?.sessionDescriptionHandler?.sendDtmf(tones)) throw new Error(`按键 ${tones} 未能发送`);
  }

  ringing(session) {
    if (this.session) { this.manager.decline(session); return; } // one call at a time
    this.session = session;
    clearTimeout(this.wrapUpTimer);
    const number = session.remoteIdentity?.uri?.user || "未知号码";
    const name = session.remoteIdentity?.displayName; // a supervisor's call says what it is: 密语 <agent>
    $(this.root, "#sp-caller").textContent = name && name !== number ? `${name} ${number}` : number;
    this.show("ringing");
  }

  answered() {
    this.show("talking");
    this.levelTimer = setInterval(() => this.measure(), 500);
  }

  held(held) {
    $(this.root, "#sp-hold").setAttribute("aria-pressed", String(held));
    this.show(held ? "held" : "talking");
  }

  // How much sound has arrived from the other party (WebRTC inbound-rtp totalAudioEnergy): a silent line shows.
  async measure() {
    const pc = this.session?.sessionDescriptionHandler?.peerConnection;
    if (!pc) return;
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        const level = $(this.root, "#sp-level");
        level.dataset.energy = String(s.totalAudioEnergy || 0);
        level.dataset.packets = String(s.packetsReceived || 0);
        level.textContent = s.totalAudioEnergy > 0 ? "对方声音正常" : "未收到对方声音";
      }
      if (s.type === "media-source" && s.kind === "audio") $(this.root, "#sp-level").dataset.micEnergy = String(s.totalAudioEnergy || 0);
      if (s.type === "outbound-rtp" && s.kind === "audio") $(this.root, "#sp-level").dataset.sent = String(s.packetsSent || 0);
    });
  }

  ended() {
    clearInterval(this.levelTimer);
    const answered = ["talking", "held"].includes(this.phase);
    this.session = null;
    this.phase = null;
    $(this.root, "#sp-mute").setAttribute("aria-pressed", "false");
    $(this.root, "#sp-hold").setAttribute("aria-pressed", "false");
    this.show("registered");
    if (this.mode === "agent" && answered) this.wrapUp();
  }

  // 话后整理: pause through the page's status form, back to 示闲 after wrap_up_s (0: the agent decides).
  wrapUp() {
    const submit = (state) => document.querySelector(`form.state-form[data-state="${state}"]`)?.requestSubmit();
    submit("wrap_up");
    if (this.account.wrap_up_s > 0) this.wrapUpTimer = setTimeout(() => submit("ready"), this.account.wrap_up_s * 1000);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("softphone");
  if (root) new Softphone(root).start();
});
