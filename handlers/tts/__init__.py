"""HANDLER_TYPE=tts: text to speech, in the request shapes clients already send.

Input, in one of three shapes (told apart by the field holding the words; see requests.py):
  worker  {"text", "voice", "speed" (0.5 to 2.0), "format" (wav, mp3, ogg, flac),
           "sample_rate", "engine"}
  openai  OpenAI's speech API: {"input", "model" (an engine, or tts-1 / tts-1-hd /
           gpt-4o-mini-tts meaning the worker's engine), "voice" (OpenAI's names map onto the
           engine's voices), "response_format" (mp3, opus, flac, wav, pcm; not aac), "speed"};
           made at 24 kHz as OpenAI's is
  runpod  RunPod's tts endpoints: {"prompt", "voice", "voice_url" (a clip to clone the voice
           from, for engines that clone), "format"}
and in every shape `stream`, `destination` (s3://bucket/key or volume://path) and
`credentials`. The text is at most RUNPOD_SLIM_TTS_MAX_CHARS characters; the engine is
RUNPOD_SLIM_TTS_ENGINE unless the job names one.

Output: one result object,

  {"audio_base64" (inline) | "audio_url" and "destination" (s3) | "destination" and "path"
   (volume), "bytes", "format", "sample_rate", "duration_s", "engine", "voice", "characters"}

A job in RunPod's shape gets `audio_url` when the worker has a results place
(RUNPOD_SLIM_RESULTS_URL) or the job a destination. A worker started with
RUNPOD_SLIM_TTS_STREAM=true streams instead (handler.TTSHandler.streaming says why it is the
worker's choice): a job with `"stream": true` gets, as each piece is spoken,

  {"chunk": i, "text": piece, "audio_base64": one complete file, "format", "sample_rate",
   "duration_s"}

each under RunPod's 1 MB per streamed chunk, and last the result object with "done": true and
"chunks": n. The text is split into sentences (long ones at commas, then at spaces); each chunk
is a complete file that plays on its own; decoded and joined in chunk order they are exactly
the whole file's samples. Through /runsync a streaming worker's output is the list of items.

Engines (engines.py; one module each): piper (ONNX voices on the CPU, the default; no torch),
kokoro and qwen (torch, on the GPU when there is one). Modules: text (sentences), audio (rates,
resampling, encoding), requests (shapes -> one SpeechRequest), settings, handler (the
lifecycle). Voices load once per worker: setup() loads the default one, others on first use
into a small cache. Synthesis and encoding run in threads, so the SDK's event loop keeps
serving, and when streaming the next piece is spoken while the current chunk is being sent.
"""

from __future__ import annotations

from .handler import TTSHandler

__all__ = ["TTSHandler"]
