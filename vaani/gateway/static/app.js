// The page: send a file or a recording to /v1/audio/transcriptions (verbose_json with word times),
// show the transcript and the words, and highlight the word being spoken while the audio plays.
"use strict";

const $ = (id) => document.getElementById(id);
const player = $("player");
let words = [];      // [{word, start, end, spans: [transcript span, list item]}]
let recorder = null;

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
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
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
