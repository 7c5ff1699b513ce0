// spicesrv's landing page: spice-html5 connected to the server that served
// this page, on the same host and port, over wss when the page came over
// https.  It asks for the password when the server refuses the link, and
// lets the screen follow the window when the server has an agent.
import * as SpiceHtml5 from './spice-html5/main.js';

const state = { phase: 'connecting', error: null, tries: 0 };
window.spicesrv = state;

const statusLine = document.getElementById('status');
const login = document.getElementById('login');
const loginMessage = document.getElementById('login-message');
const passwordInput = document.getElementById('password');
let sc = null;

function show(phase, text) {
    state.phase = phase;
    statusLine.textContent = text;
    statusLine.className = phase;
}

function websocketURI() {
    const scheme = window.location.protocol === 'https:' ? 'wss://' : 'ws://';
    return scheme + window.location.host + '/';
}

function connect(password) {
    state.tries += 1;
    show('connecting', 'Connecting to ' + window.location.host + '\u2026');
    try {
        sc = new SpiceHtml5.SpiceMainConn({
            uri: websocketURI(), screen_id: 'spice-screen', message_id: 'message-div',
            password: password, onerror: failed, onsuccess: connected, onagent: agent,
        });
        window.spice_connection = sc;
    } catch (e) {
        failed(e);
    }
}

function connected() {
    show('connected', 'Connected');
}

function agent(conn) {
    // The server's agent resizes the screen to the window.
    window.addEventListener('resize', SpiceHtml5.handle_resize);
    SpiceHtml5.resize_helper(conn);
}

function failed(e) {
    if (sc) {
        sc.stop();
        sc = null;
    }
    const message = (e && e.message) ? e.message : String(e);
    state.error = message;
    if (message === 'Permission denied.') {
        const again = state.tries > 1;
        show('password', again ? 'Wrong password.' : 'This server needs a password.');
        loginMessage.textContent = again ? 'Wrong password; try again.'
                                         : 'This server needs a password.';
        login.classList.toggle('wrong', again);
        login.hidden = false;
        passwordInput.value = '';
        passwordInput.focus();
        return;
    }
    show('error', 'Disconnected: ' + message);
}

login.addEventListener('submit', (event) => {
    event.preventDefault();
    login.hidden = true;
    connect(passwordInput.value);
});

connect('');
