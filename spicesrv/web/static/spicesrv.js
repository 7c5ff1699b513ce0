// spicesrv's landing page: spice-html5 connected to the server that served
// this page, on the same host and port, over wss when the page came over
// https.  It asks for the password when the server refuses the link, lets
// the screen follow the window when the server has an agent, and starts the
// sound on the user's first click or key when the browser blocked it.
import * as SpiceHtml5 from './spice-html5/main.js';

const state = { phase: 'connecting', error: null, tries: 0, sound: 'none' };
window.spicesrv = state;

const statusLine = document.getElementById('status');
const login = document.getElementById('login');
const loginMessage = document.getElementById('login-message');
const passwordInput = document.getElementById('password');
const screen = document.getElementById('spice-screen');
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
    soundChanged();
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

// Sound.  spice-html5 plays the server's sound in an <audio autoplay>
// element it adds to the screen when playback starts, and never calls
// play() itself.  Browsers allow autoplay only after the user has clicked
// or typed on the page (entering a password counts): before that the
// element stays paused while its buffer grows.  So: say so, and on the
// user's first click or key start it at the newest sound, not at what has
// piled up since.
function soundElements() {
    return Array.from(screen.querySelectorAll('audio'));
}

function soundChanged() {
    const elements = soundElements();
    const waiting = elements.some((audio) => audio.paused && audio.readyState >= 2);
    state.sound = waiting ? 'waiting' : elements.some((audio) => !audio.paused) ? 'playing'
                                                                               : 'none';
    if (state.phase !== 'connected')
        return;
    statusLine.textContent = waiting ? 'Click or press a key for sound.' : 'Connected';
    statusLine.className = waiting ? 'hint' : 'connected';
}

function startSound() {
    for (const audio of soundElements()) {
        if (!audio.paused)
            continue;
        const buffered = audio.buffered;
        if (buffered.length) {
            const end = buffered.end(buffered.length - 1);
            audio.currentTime = Math.max(buffered.start(buffered.length - 1), end - 0.2);
        }
        audio.play().catch(() => {});
    }
}

for (const type of ['pointerdown', 'keydown'])
    document.addEventListener(type, startSound, true);

new MutationObserver((records) => {
    for (const record of records)
        for (const node of record.addedNodes)
            if (node.nodeName === 'AUDIO')
                for (const type of ['canplay', 'play', 'pause', 'emptied'])
                    node.addEventListener(type, soundChanged);
    soundChanged();
}).observe(screen, { childList: true });

login.addEventListener('submit', (event) => {
    event.preventDefault();
    login.hidden = true;
    connect(passwordInput.value);
});

connect('');
