"""The OpenAI-compatible transcription API and the web page, in front of Triton (`vaani gateway`)."""
