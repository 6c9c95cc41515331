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


# --- Qwen3-TTS --------------------------------------------------------------------------------

QWEN_SPECIAL = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<tts_pad>",
    "<tts_bos>",
    "<tts_eos>",
)
QWEN_CODEBOOK = 64  # codec codes per group
QWEN_GROUPS = 4  # codec groups (the talker's num_code_groups, the tokenizer's quantizers)
QWEN_HIDDEN = 32
QWEN_FOLDERS = {
    "custom_voice": "Qwen3-TTS-12Hz-0.6B-CustomVoice",
    "base": "Qwen3-TTS-12Hz-0.6B-Base",
}
_CORPUS = (
    "Hello from runpod slim. The quick brown fox jumps over the lazy dog. "
    "A short sentence, spoken by a tiny model with random weights: it says nothing at all. "
    "assistant user system 0123456789"
)


def qwen_text_tokenizer() -> Any:
    """A byte-level BPE tokenizer (Qwen2's kind) of about 300 tokens, the chat markers included."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=list(QWEN_SPECIAL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator([_CORPUS], trainer=trainer)
    return Qwen2TokenizerFast(
        tokenizer_object=core,
        bos_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=list(QWEN_SPECIAL[1:]),
    )


def qwen_config(kind: str, tokenizer: Any) -> Any:
    """Qwen3TTSConfig of a 12 Hz model of `kind` (custom_voice or base), one layer each."""
    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL}
    # Codec ids: the codes first, then the control tokens, languages and speakers.
    control = QWEN_CODEBOOK
    languages = {"english": control + 7, "chinese": control + 8}
    speakers = {name: control + 9 + index for name, index in QWEN_SPEAKERS.items()}
    layer = {
        "hidden_size": QWEN_HIDDEN,
        "intermediate_size": 2 * QWEN_HIDDEN,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "max_position_embeddings": 4096,
    }
    talker = {
        **layer,
        # generate() suppresses the last 1024 ids (all but end-of-speech): the controls live there.
        "vocab_size": control + 1024,
        "text_vocab_size": len(tokenizer),
        "text_hidden_size": QWEN_HIDDEN,
        "num_code_groups": QWEN_GROUPS,
        "rope_scaling": {"rope_type": "default", "mrope_section": [4, 2, 2], "interleaved": True},
        "codec_pad_id": control,
        "codec_bos_id": control + 1,
        "codec_eos_token_id": control + 2,
        "codec_think_id": control + 3,
        "codec_nothink_id": control + 4,
        "codec_think_bos_id": control + 5,
        "codec_think_eos_id": control + 6,
        "codec_language_id": languages,
        "spk_id": speakers if kind == "custom_voice" else {},
        "spk_is_dialect": dict.fromkeys(speakers, False) if kind == "custom_voice" else {},
        "code_predictor_config": {
            **layer,
            "vocab_size": QWEN_CODEBOOK,
            "num_code_groups": QWEN_GROUPS,
        },
    }
    speaker_encoder = {
        "mel_dim": 128,
        "enc_dim": QWEN_HIDDEN,
        "enc_channels": [32, 32, 32, 32, 96],
        "enc_attention_channels": 8,
        "enc_se_channels": 8,
        "sample_rate": QWEN_RATE,
    }
    return Qwen3TTSConfig(
        talker_config=talker,
        speaker_encoder_config=speaker_encoder,
        tokenizer_type="qwen3_tts_tokenizer_12hz",
        tts_model_size="0b6",
        tts_model_type=kind,
        im_start_token_id=ids["<|im_start|>"],
        im_end_token_id=ids["<|im_end|>"],
        tts_pad_token_id=ids["<tts_pad>"],
        tts_bos_token_id=ids["<tts_bos>"],
        tts_eos_token_id=ids["<tts_eos>"],
    )


def build_speech_tokenizer(folder: Path) -> None:
    """The 12 Hz speech tokenizer (a Mimi encoder, Qwen's decoder), tiny, saved in `folder`."""
    from qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2 import (
        Qwen3TTSTokenizerV2Config,
    )
    from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import (
        Qwen3TTSTokenizerV2Model,
    )
    from transformers import EncodecFeatureExtractor

    config = Qwen3TTSTokenizerV2Config(
        encoder_config={
            "hidden_size": QWEN_HIDDEN,
            "num_filters": 4,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "intermediate_size": 2 * QWEN_HIDDEN,
            "codebook_size": QWEN_CODEBOOK,
            "codebook_dim": 16,
            "vector_quantization_hidden_dimension": 16,
            "num_quantizers": QWEN_GROUPS,
            "num_semantic_quantizers": 1,
            "upsample_groups": QWEN_HIDDEN,
            "sampling_rate": QWEN_RATE,
        },
        decoder_config={
            "codebook_size": QWEN_CODEBOOK,
            "hidden_size": QWEN_HIDDEN,
            "latent_dim": QWEN_HIDDEN,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "intermediate_size": 2 * QWEN_HIDDEN,
            "num_hidden_layers": 1,
            "num_quantizers": QWEN_GROUPS,
            "decoder_dim": 32,
            "codebook_dim": 32,  # read by the decoder, absent from its config class
        },
        encoder_valid_num_quantizers=QWEN_GROUPS,
        input_sample_rate=QWEN_RATE,
        output_sample_rate=QWEN_RATE,
    )
    Qwen3TTSTokenizerV2Model(config).save_pretrained(folder)
    EncodecFeatureExtractor(feature_size=1, sampling_rate=QWEN_RATE).save_pretrained(folder)


def build_qwen(volume: Path, kinds: tuple[str, ...] = ("custom_voice", "base")) -> dict[str, Path]:
    """Random Qwen3-TTS models of `kinds` under `volume`/models/qwen3-tts; kind -> folder."""
    import torch
    from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSForConditionalGeneration
    from qwen_tts.core.models.processing_qwen3_tts import Qwen3TTSProcessor

    folders = {}
    for kind in kinds:
        torch.manual_seed(SEED)
        folder = volume / "models" / "qwen3-tts" / QWEN_FOLDERS[kind]
        # Built beside its place and moved in whole, as a finished download is.
        staging = folder.with_name(f".{folder.name}.building")
        tokenizer = qwen_text_tokenizer()
        config = qwen_config(kind, tokenizer)
        Qwen3TTSForConditionalGeneration(config).save_pretrained(staging)
        _trim_speaker_encoder_config(staging / "config.json")
        Qwen3TTSProcessor(tokenizer=tokenizer).save_pretrained(staging)
        build_speech_tokenizer(staging / "speech_tokenizer")
        generation = {"do_sample": True, "top_k": 10, "top_p": 1.0, "temperature": 0.9}
        (staging / "generation_config.json").write_text(json.dumps(generation), encoding="utf-8")
        staging.rename(folder)
        folders[kind] = folder
    return folders


def _trim_speaker_encoder_config(path: Path) -> None:
    """Keep only the speaker encoder settings its config class takes.

    save_pretrained writes every attribute of the nested config (model_type, dtype, ...), and
    Qwen3TTSSpeakerEncoderConfig.__init__ takes no other keywords: the published models'
    config.json holds just its own keys, and so must this one.
    """
    import inspect

    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSSpeakerEncoderConfig

    accepted = set(inspect.signature(Qwen3TTSSpeakerEncoderConfig.__init__).parameters)
    config = json.loads(path.read_text(encoding="utf-8"))
    config["speaker_encoder_config"] = {
        key: value for key, value in config["speaker_encoder_config"].items() if key in accepted
    }
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
