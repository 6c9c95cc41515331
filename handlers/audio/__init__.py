"""HANDLER_TYPE=audio: speech to text with whisperx (faster-whisper / CTranslate2).

The package, by responsibility:

  handler            AudioHandler: settings, device, setup, the models, a job's dispatch
  settings           RUNPOD_SLIM_AUDIO_MODEL, _MAX_MODELS, _MAX_DURATION_S, HF_TOKEN
  models             the one model cache (Whisper, alignment, diarization): LRU, loaded once
  whisper_models     what a `model` name means, loading a Whisper model
  alignment          what `align_model` may name, loading a wav2vec2 aligner
  diarization        pyannote's pipeline
  decoding           a job's audio fetched, decoded to 16 kHz mono, its length checked
  languages          what `language` may be
  whisperx_job       the whisperx schema: WhisperxRequest, and its run
  compat             worker-faster_whisper's schema: which schema a job is, its request, output
  faster_whisper_job a worker-faster_whisper job's run
  subtitles          segments as JSON, SRT and WebVTT
"""

from __future__ import annotations

from .handler import AudioHandler

__all__ = ["AudioHandler"]
