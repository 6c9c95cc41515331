"""A worker-faster_whisper job run by the audio handler (schema: handlers.whisper_compat).

faster-whisper's own sequential transcribe(), as the official worker runs it, on a model the
audio handler loaded (the same cache as its whisperx jobs: a model both use is loaded once).
With `translate`, a second pass with task=translate gives `translation`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .base import JobContext
from .errors import JobError
from .whisper_compat import FasterWhisperRequest, segment_json, transcript, words_json

if TYPE_CHECKING:
    from .audio import AudioHandler

LOG = logging.getLogger("runpod-slim")


def run_faster_whisper(
    handler: AudioHandler, job: JobContext, request: FasterWhisperRequest
) -> dict[str, Any]:
    """Transcribe (and translate) as worker-faster_whisper does; its output, field for field."""
    from faster_whisper import decode_audio

    loaded = handler.model(request.model, handler.default_compute_type())
    model = loaded.model
    if not model.model.is_multilingual and request.language not in (None, "en"):
        raise JobError(
            f"input.language={request.language!r} is not allowed with the English-only "
            f"model {request.model!r}: choose en, or a multilingual model"
        )
    vocabulary = int(model.hf_tokenizer.get_vocab_size())
    beyond = [t for t in request.options.suppress_tokens if t >= vocabulary]
    if beyond:
        raise JobError(
            f"input.suppress_tokens names token {beyond[0]}, beyond model {request.model!r}'s "
            f"vocabulary of {vocabulary} tokens: use ids from -1 to {vocabulary - 1}"
        )
    sources = {"audio": request.audio, "audio_base64": request.audio_base64}
    audio = handler._decode(job, sources, decode_audio)
    job.progress(f"decoded {len(audio) / 16000:.1f} s of audio; transcribing")

    options = request.options.kwargs()
    with loaded.lock:
        pieces, info = model.transcribe(
            audio,
            language=request.language,
            task="transcribe",
            word_timestamps=request.word_timestamps,
            **options,
        )
        segments = list(pieces)  # the generator decodes as it is read: inside the lock
        translated = None
        if request.translate:
            job.progress(f"transcribed {len(segments)} segments ({info.language}); translating")
            # The same decoding, from the language found, less the prompt: a prompt in the
            # spoken language would pull the translation back into it.
            pieces, _ = model.transcribe(
                audio,
                language=info.language,
                task="translate",
                **{**options, "initial_prompt": None},
            )
            translated = list(pieces)
    del audio

    output: dict[str, Any] = {
        "segments": [segment_json(s) for s in segments],
        "detected_language": info.language,
        "transcription": transcript(request.transcription, segments),
        "translation": None if translated is None else transcript(request.translation, translated),
        "device": handler.device,
        "model": request.model,
    }
    if request.word_timestamps:
        output["word_timestamps"] = words_json(segments)
    return output
