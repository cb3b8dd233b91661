"""Inputs per modality, and how they are fused.

- **image**: the instance's feature from one backbone (or several, joined).
- **audio**: log-mel statistics of the sample's clip. The power spectrogram
  |STFT|² (Hann window of 25 ms, hop 10 ms) is projected on ``n_mels``
  triangular filters evenly spaced on the mel scale m = 2595·log₁₀(1 + f/700)
  (O'Shaughnessy 1987), then log(· + 1e-10); the feature is the mean and
  the standard deviation of each band over time (2·n_mels numbers).
- **text**: the sample's caption, encoded by a sentence encoder folder
  (``minilm``: the offline all-MiniLM-L6-v2 of ``luminary.ctc.encoder``,
  mean-pooled and L2-normalised as sentence-transformers does) or by
  ``hashing``: a bag of word unigrams and bigrams hashed into 256 bins
  (fast, no model; the default in tests).

Audio and text belong to a sample (a frame), so every person in it shares
them. **Early** fusion joins the modalities' vectors into one input;
**late** fusion trains one model per modality and averages their softmax
probabilities over the seen classes (equal weights unless given).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from luminary.activity.layout import Split, audio_path, read_caption
from luminary.core.errors import LuminaryError


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters on the mel scale."""
    def to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = to_hz(np.linspace(to_mel(0.0), to_mel(sample_rate / 2), n_mels + 2))
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    bank = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (freqs - lo) / max(mid - lo, 1e-9)
        falling = (hi - freqs) / max(hi - mid, 1e-9)
        bank[m] = np.clip(np.minimum(rising, falling), 0.0, None)
    return bank


def log_mel_stats(signal: np.ndarray, sample_rate: int, n_mels: int = 32) -> np.ndarray:
    """(2·n_mels,) mean and std over time of the log-mel spectrogram."""
    from scipy.signal import stft

    if signal.ndim > 1:
        signal = signal.mean(axis=1)
    if np.issubdtype(signal.dtype, np.integer):
        signal = signal / float(np.iinfo(signal.dtype).max)
    n_fft = int(round(0.025 * sample_rate))
    hop = int(round(0.010 * sample_rate))
    _, _, spec = stft(signal.astype(np.float64), fs=sample_rate, window="hann", nperseg=n_fft,
                      noverlap=n_fft - hop, boundary=None, padded=False)
    power = np.abs(spec) ** 2  # (freqs, frames)
    logmel = np.log(mel_filterbank(n_mels, n_fft, sample_rate) @ power + 1e-10)
    return np.concatenate([logmel.mean(axis=1), logmel.std(axis=1)]).astype(np.float32)


def audio_features(root: str | Path, samples: Sequence[str], n_mels: int = 32) -> dict[str, np.ndarray]:
    """Sample id -> log-mel statistics of ``audio/wav_ID.wav`` (each file read once)."""
    from scipy.io import wavfile

    out = {}
    for sample in sorted(set(samples)):
        path = audio_path(root, sample)
        try:
            rate, signal = wavfile.read(path)
        except (ValueError, OSError) as exc:
            raise LuminaryError(f"{path}: not a readable wav file ({exc})") from None
        out[sample] = log_mel_stats(signal, rate, n_mels)
    return out


def hashing_encoder(texts: Sequence[str], dim: int = 256) -> np.ndarray:
    """(N, dim) L2-normalised counts of hashed word unigrams and bigrams."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        words = re.findall(r"[a-z]+", text.lower())
        for gram in words + [f"{a} {b}" for a, b in zip(words, words[1:])]:
            out[i, int.from_bytes(hashlib.sha1(gram.encode()).digest()[:4], "little") % dim] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def sentence_encoder(texts: Sequence[str], folder: str | Path, batch_size: int = 64) -> np.ndarray:
    """(N, h) mean-pooled, L2-normalised embeddings from a local encoder folder (no download)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise LuminaryError(f"{folder}: not an encoder folder (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    chunks = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[i:i + batch_size]), padding=True, truncation=True, max_length=128,
                            return_tensors="pt")
            hidden = model(**enc).last_hidden_state  # (B, T, h)
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(chunks).astype(np.float32)


def text_features(root: str | Path, samples: Sequence[str], encoder: str = "hashing") -> dict[str, np.ndarray]:
    """Sample id -> caption embedding (``hashing``, ``minilm`` or an encoder folder)."""
    unique = sorted(set(samples))
    captions = [read_caption(root, s) for s in unique]
    if encoder == "hashing":
        vectors = hashing_encoder(captions)
    else:
        if encoder == "minilm":
            from luminary.ctc.encoder import default_encoder

            folder = default_encoder()
        else:
            folder = Path(encoder)
        vectors = sentence_encoder(captions, folder)
    return dict(zip(unique, vectors))


def modality_inputs(root: str | Path, split: Split, modalities: Sequence[str], backbones: Sequence[str],
                    text_encoder: str = "hashing", n_mels: int = 32) -> dict[str, np.ndarray]:
    """Modality -> (N, dim) inputs aligned with the split's instances."""
    out = {}
    for modality in modalities:
        if modality == "image":
            out["image"] = np.concatenate([split.features[b] for b in backbones], axis=1)
        elif modality == "audio":
            table = audio_features(root, split.samples, n_mels)
            out["audio"] = np.stack([table[s] for s in split.samples])
        elif modality == "text":
            table = text_features(root, split.samples, text_encoder)
            out["text"] = np.stack([table[s] for s in split.samples])
        else:
            raise LuminaryError(f"fusion.modalities: unknown modality '{modality}' (image, audio or text)")
    return out


def early_fusion(inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The modalities' vectors joined: (N, Σ dims)."""
    return np.concatenate([inputs[m] for m in inputs], axis=1)


def late_fusion(scores: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Σ_m w_m softmax(s_m) over the seen classes (very low scores mark the unseen ones)."""
    weights = list(weights) if weights is not None else [1.0] * len(scores)
    total = None
    for s, w in zip(scores, weights):
        z = s - s.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        total = w * p if total is None else total + w * p
    return total / sum(weights)
