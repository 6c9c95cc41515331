"""A worker-faster_whisper job's run (its input is checked by handlers.audio.compat).

faster-whisper's own sequential transcribe(), as the official worker runs it, on a model the
audio handler loaded (the same cache as its whisperx jobs: a model both use is loaded once).
With `translate`, a second pass with task=translate gives `translation`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base import JobContext
from ..errors import JobError
from .compat import FasterWhisperRequest, segment_json, transcript, words_json
from .decoding import SAMPLE_RATE, decode_job_audio
from .languages import check_english_only

if TYPE_CHECKING:
    from .handler import AudioHandler


def run_faster_whisper(
    handler: AudioHandler, job: JobContext, request: FasterWhisperRequest
) -> dict[str, Any]:
    """Transcribe (and translate) as worker-faster_whisper does; its output, field for field."""
    loaded = handler.model(request.model, handler.default_compute_type())
    model = loaded.model
    check_english_only(model.model.is_multilingual, request.model, request.language)
    vocabulary = int(model.hf_tokenizer.get_vocab_size())
    beyond = [t for t in request.options.suppress_tokens if t >= vocabulary]
    if beyond:
        raise JobError(
            f"input.suppress_tokens names token {beyond[0]}, beyond model {request.model!r}'s "
            f"vocabulary of {vocabulary} tokens: use ids from -1 to {vocabulary - 1}"
        )
    audio = decode_job_audio(
        job, request.audio, request.audio_base64, handler.settings.max_duration_s
    )
    job.progress(f"decoded {len(audio) / SAMPLE_RATE:.1f} s of audio; transcribing")

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
