"""Speaker diarization: pyannote's pipeline through whisperx (a gated model, needs a token).

The pipeline is made by a factory, (token, device) -> pipeline(audio, min_speakers=,
max_speakers=) -> a DataFrame with start, end, speaker; tests give the handler their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import JobError

DIARIZATION_MODEL = "pyannote/speaker-diarization-3.1"

Diarizer = Callable[..., Any]
DiarizerFactory = Callable[[str, str], Diarizer]


def default_diarization(token: str, device: str) -> Diarizer:
    """pyannote's diarization pipeline through whisperx (downloads the gated model)."""
    from whisperx.diarize import DiarizationPipeline

    pipeline: Diarizer = DiarizationPipeline(
        model_name=DIARIZATION_MODEL, use_auth_token=token, device=device
    )
    return pipeline


def load_diarizer(factory: DiarizerFactory, token: str, device: str) -> Diarizer:
    """The factory's pipeline; a failure says what to do (the token is redacted by the caller)."""
    try:
        return factory(token, device)
    except Exception as exc:
        raise JobError(
            f"the diarization model {DIARIZATION_MODEL} could not be loaded "
            f"({str(exc)[:200]}); accept its terms on huggingface.co "
            "with the account of the token, and allow network access to huggingface.co"
        ) from None
