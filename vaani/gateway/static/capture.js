// The page's microphone capture (an AudioWorklet): every block of samples the audio graph renders
// is posted to the page, which sends them to /v1/realtime as PCM16.
"use strict";

class Capture extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) this.port.postMessage(channel.slice(0));
    return true;
  }
}

registerProcessor("capture", Capture);
