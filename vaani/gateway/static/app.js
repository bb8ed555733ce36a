// The page: send a file or a recording to /v1/audio/transcriptions (verbose_json with word times),
// show the transcript and the words, and highlight the word being spoken while the audio plays.
"use strict";

const $ = (id) => document.getElementById(id);
const player = $("player");
let words = [];      // [{word, start, end, spans: [transcript span, list item]}]
let recorder = null;
// The speech as it was said: the browser's call-audio processing (echo cancellation, noise
// suppression, automatic gain) garbles it for the model (measured on live captions in Chromium).
const RAW_AUDIO = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };

function show(element, visible) { element.hidden = !visible; }

function status(text) { $("status").textContent = text; }

function fail(message) {
  $("error").textContent = message;
  show($("error"), true);
  status("");
}

function seconds(value) { return value.toFixed(2) + " s"; }

async function transcribe(blob, name) {
  show($("error"), false);
  show($("result"), false);
  player.src = URL.createObjectURL(blob);
  show(player, true);
  status("transcribing " + name + " …");
  const form = new FormData();
  form.append("file", blob, name);
  form.append("model", "vaani");
  form.append("response_format", "verbose_json");
  form.append("timestamp_granularities[]", "word");
  form.append("timestamp_granularities[]", "segment");
  const began = performance.now();
  let response;
  try {
    response = await fetch("/v1/audio/transcriptions", { method: "POST", body: form });
  } catch (error) {
    fail("The gateway cannot be reached: " + error);
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    fail((body.error && body.error.message) || "HTTP " + response.status);
    return;
  }
  render(body, performance.now() - began);
  status("");
}

function render(result, elapsedMs) {
  const transcript = $("transcript");
  const list = $("words");
  transcript.replaceChildren();
  list.replaceChildren();
  words = (result.words || []).map((item) => ({ ...item, spans: [] }));
  if (words.length === 0) {
    transcript.textContent = result.text;
  }
  show($("no-words"), words.length === 0 && result.text !== "");
  words.forEach((item) => {
    const span = document.createElement("span");
    span.textContent = item.word;
    transcript.append(span, " ");
    const entry = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = seconds(item.start) + " – " + seconds(item.end);
    const word = document.createElement("span");
    word.className = "word";
    word.textContent = item.word;
    entry.append(word, " ", time);
    entry.addEventListener("click", () => { player.currentTime = item.start; player.play(); });
    list.append(entry);
    item.spans.push(span, entry);
  });
  $("meta").textContent = seconds(result.duration) + " of audio, transcribed in " +
    (elapsedMs / 1000).toFixed(2) + " s" + (words.length ? ", " + words.length + " words" : "");
  show($("result"), true);
}

function highlight() {
  const now = player.currentTime;
  for (const item of words) {
    const current = now >= item.start && now < item.end;
    for (const element of item.spans) element.classList.toggle("current", current);
  }
  if (!player.paused) requestAnimationFrame(highlight);
}

player.addEventListener("play", () => requestAnimationFrame(highlight));
player.addEventListener("seeked", highlight);
player.addEventListener("pause", highlight);

$("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) transcribe(file, file.name);
});

$("record").addEventListener("click", async () => {
  const button = $("record");
  if (recorder && recorder.state === "recording") {
    recorder.stop();
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: RAW_AUDIO });
  } catch (error) {
    fail("No microphone: " + error.message);
    return;
  }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.addEventListener("dataavailable", (event) => chunks.push(event.data));
  recorder.addEventListener("stop", () => {
    stream.getTracks().forEach((track) => track.stop());
    button.textContent = "● Record";
    button.classList.remove("recording");
    const type = recorder.mimeType || "audio/webm";
    const extension = type.includes("mp4") ? "m4a" : type.includes("ogg") ? "ogg" : "webm";
    transcribe(new Blob(chunks, { type }), "recording." + extension);
  });
  recorder.start();
  button.textContent = "■ Stop";
  button.classList.add("recording");
  status("recording … press Stop to transcribe");
});

// Live captions: the microphone → an AudioWorklet → PCM16 in base64 → OpenAI's Realtime transcription
// events on /v1/realtime (with this gateway's partial events). Finished text is final; the partial
// (grey, italic) may still change until the model finishes it at a pause.
const RATES = [8000, 16000, 24000, 44100, 48000];  // what the gateway accepts as audio/pcm
const APPEND_SECONDS = 0.1;
let live = null;  // {socket, context, stream, pending: [Float32Array], held}

function pcm16Base64(blocks) {
  const count = blocks.reduce((sum, block) => sum + block.length, 0);
  const bytes = new Uint8Array(count * 2);
  const view = new DataView(bytes.buffer);
  let offset = 0;
  for (const block of blocks) {
    for (const sample of block) {
      const clipped = Math.max(-1, Math.min(1, sample));
      view.setInt16(offset, clipped < 0 ? clipped * 32768 : clipped * 32767, true);
      offset += 2;
    }
  }
  let text = "";
  for (let start = 0; start < bytes.length; start += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(start, start + 0x8000));
  }
  return btoa(text);
}

function caption(event) {
  if (event.type === "conversation.item.input_audio_transcription.completed" && event.transcript) {
    const finished = $("finished");
    finished.textContent += (finished.textContent ? " " : "") + event.transcript;
  } else if (event.type === "vaani.transcription.partial") {
    $("partial").textContent = event.text ? " " + event.text : "";
    if (!event.text && live && live.stopping) live.socket.close();
  } else if (event.type === "error") {
    fail(event.error.message);
  }
}

function liveButton(running) {
  const button = $("live");
  button.textContent = running ? "■ Stop live" : "● Live captions";
  button.classList.toggle("recording", running);
}

async function startLive() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, ...RAW_AUDIO } });
  } catch (error) {
    fail("No microphone: " + error.message);
    return;
  }
  const context = new AudioContext();
  const rate = RATES.includes(context.sampleRate) ? context.sampleRate : null;
  if (rate === null) {
    fail("The browser's audio runs at " + context.sampleRate + " Hz, which the gateway does not take");
    stream.getTracks().forEach((track) => track.stop());
    return;
  }
  await context.audioWorklet.addModule("/static/capture.js");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(scheme + "//" + location.host + "/v1/realtime?intent=transcription&partial=true");
  live = { socket, context, stream, pending: [], held: 0, stopping: false };
  show($("error"), false);
  $("finished").textContent = "";
  $("partial").textContent = "";
  show($("live-result"), true);
  liveButton(true);
  status("listening …");
  socket.addEventListener("open", () => {
    const format = { type: "audio/pcm", rate };
    socket.send(JSON.stringify({
      type: "session.update",
      session: { type: "transcription", audio: { input: { format, turn_detection: { type: "server_vad" } } } },
    }));
    const source = context.createMediaStreamSource(stream);
    const capture = new AudioWorkletNode(context, "capture");
    capture.port.onmessage = (message) => {
      if (!live || live.stopping || socket.readyState !== WebSocket.OPEN) return;
      live.pending.push(message.data);
      live.held += message.data.length;
      if (live.held >= APPEND_SECONDS * rate) {
        socket.send(JSON.stringify({ type: "input_audio_buffer.append", audio: pcm16Base64(live.pending) }));
        live.pending = [];
        live.held = 0;
      }
    };
    source.connect(capture);
  });
  socket.addEventListener("message", (message) => caption(JSON.parse(message.data)));
  socket.addEventListener("close", () => finishLive());
}

function stopLive() {
  if (!live || live.stopping) return;
  live.stopping = true;
  status("finishing …");
  const { socket } = live;
  if (socket.readyState === WebSocket.OPEN) {
    if (live.held > 0) {
      socket.send(JSON.stringify({ type: "input_audio_buffer.append", audio: pcm16Base64(live.pending) }));
    }
    socket.send(JSON.stringify({ type: "input_audio_buffer.commit" }));
    setTimeout(() => socket.close(), 10000);  // the last text normally comes well before
  } else {
    finishLive();
  }
}

function finishLive() {
  if (!live) return;
  live.stream.getTracks().forEach((track) => track.stop());
  live.context.close();
  live = null;
  liveButton(false);
  status("");
}

$("live").addEventListener("click", () => (live ? stopLive() : startLive()));
