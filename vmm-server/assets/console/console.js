// The console page: the token in the address opens the console once, over a websocket to
// /api/v1/console/{token}: the screen with noVNC, the serial console with xterm.js.
import RFB from './novnc/core/rfb.js';

const params = new URLSearchParams(location.search);
const token = params.get('token') || '';
const kind = params.get('kind') === 'serial' ? 'serial' : 'vnc';
// The token is used up by this page; it has no business in the history or a bookmark.
history.replaceState(null, '', location.pathname + '?kind=' + kind);
const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
const url = scheme + location.host + '/api/v1/console/' + encodeURIComponent(token);
const screen = document.getElementById('screen');
const status = document.getElementById('status');

function say(state) {
  status.textContent = state;
  document.body.dataset.state = state;
}

if (kind === 'serial') {
  document.getElementById('title').textContent = 'vmm serial console';
  const term = new Terminal({ cursorBlink: true, scrollback: 5000 });
  term.open(screen);
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => { say('connected'); term.focus(); };
  ws.onmessage = (e) => term.write(new Uint8Array(e.data));
  ws.onclose = () => say('disconnected');
  const encoder = new TextEncoder();
  term.onData((d) => ws.readyState === WebSocket.OPEN && ws.send(encoder.encode(d)));
  window.vmmTerminal = term;
} else {
  const rfb = new RFB(screen, url, {});
  rfb.scaleViewport = true;
  rfb.addEventListener('connect', () => say('connected'));
  rfb.addEventListener('disconnect', (e) => say(e.detail.clean ? 'disconnected' : 'failed'));
  window.vmmRfb = rfb;
}
