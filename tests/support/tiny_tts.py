"""Tiny tts models with random weights, built from each engine's own configuration classes.

No English torch tts weights ship on the package index and the Hub cannot be reached from the
test machines, so the tests (and bench/gpu_check.py) build models of the real architectures,
shrunk to a few hundred kilobytes, and lay them out on a volume exactly as the real ones are:

  kokoro  <volume>/models/kokoro/config.json, kokoro-v1_0.pth, voices/NAME.pt
          (kokoro.model.KModel's own submodules, saved as its state dicts)
  qwen    <volume>/models/qwen3-tts/Qwen3-TTS-12Hz-0.6B-CustomVoice/ and ...-Base/
          (qwen_tts's Qwen3TTSConfig and Qwen3TTSForConditionalGeneration, the 12 Hz speech
          tokenizer's config and model, a byte-level BPE text tokenizer), save_pretrained'd

They speak noise, but through every layer of the real code: phonemes or text tokens in,
durations or codec tokens through, a waveform at the real sample rate out. This module imports
torch and the engines' packages: run it with a tts env on the path.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

SEED = 1234
KOKORO_RATE = 24_000
QWEN_RATE = 24_000
QWEN_SPEAKERS = {"ryan": 0, "vivian": 1}


def kokoro_vocab() -> dict[str, int]:
    """Phoneme symbol -> token id: every symbol misaki's English lexicons use, and punctuation."""
    import importlib.resources

    symbols: set[str] = set(string.punctuation) | {" "}
    data = importlib.resources.files("misaki") / "data"
    for name in ("us_gold.json", "gb_gold.json"):
        for value in json.loads((data / name).read_text(encoding="utf-8")).values():
            texts = value.values() if isinstance(value, dict) else [value]
            symbols.update("".join(text for text in texts if text))
    return {symbol: index + 1 for index, symbol in enumerate(sorted(symbols))}


def kokoro_config() -> dict[str, Any]:
    """Kokoro-82M's config.json with a tiny text side (one layer, a 32-wide PL-BERT).

    The widths the code fixes stay: style_dim 128 (KModel slices the voice's style vector at
    128), hidden_dim and upsample_initial_channel 512 (istftnet.Decoder's widths are literals).
    """
    return {
        "istftnet": {
            "upsample_kernel_sizes": [20, 12],
            "upsample_rates": [10, 6],
            "gen_istft_hop_size": 5,
            "gen_istft_n_fft": 20,
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
            "resblock_kernel_sizes": [3, 7],
            "upsample_initial_channel": 512,
        },
        "dim_in": 16,
        "dropout": 0.2,
        "hidden_dim": 512,
        "max_conv_dim": 512,
        "max_dur": 4,  # durations are sums over max_dur sigmoids: short noise, fast tests
        "multispeaker": True,
        "n_layer": 1,
        "n_mels": 80,
        "n_token": 178,
        "style_dim": 128,
        "text_encoder_kernel_size": 5,
        "plbert": {
            "hidden_size": 32,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 512,
            "num_hidden_layers": 1,
            "dropout": 0.1,
        },
        "vocab": kokoro_vocab(),
    }


def build_kokoro(volume: Path, voices: tuple[str, ...] = ("af_heart", "bf_emma")) -> Path:
    """A random Kokoro model and voices under `volume`/models/kokoro; returns that folder."""
    import torch
    from kokoro.istftnet import Decoder
    from kokoro.modules import CustomAlbert, ProsodyPredictor, TextEncoder
    from transformers import AlbertConfig

    torch.manual_seed(SEED)
    config = kokoro_config()
    folder = volume / "models" / "kokoro"
    (folder / "voices").mkdir(parents=True, exist_ok=True)
    bert = CustomAlbert(AlbertConfig(vocab_size=config["n_token"], **config["plbert"]))
    parts = {
        "bert": bert,
        "bert_encoder": torch.nn.Linear(bert.config.hidden_size, config["hidden_dim"]),
        "predictor": ProsodyPredictor(
            style_dim=config["style_dim"],
            d_hid=config["hidden_dim"],
            nlayers=config["n_layer"],
            max_dur=config["max_dur"],
            dropout=config["dropout"],
        ),
        "text_encoder": TextEncoder(
            channels=config["hidden_dim"],
            kernel_size=config["text_encoder_kernel_size"],
            depth=config["n_layer"],
            n_symbols=config["n_token"],
        ),
        "decoder": Decoder(
            dim_in=config["hidden_dim"],
            style_dim=config["style_dim"],
            dim_out=config["n_mels"],
            **config["istftnet"],
        ),
    }
    torch.save(
        {name: part.state_dict() for name, part in parts.items()}, folder / "kokoro-v1_0.pth"
    )
    for voice in voices:
        # A voice is one style vector (256 = 2 x style_dim) per phoneme count, up to 510.
        torch.save(torch.randn(510, 1, 256) * 0.1, folder / "voices" / f"{voice}.pt")
    # config.json last: its presence says the model is complete.
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder
