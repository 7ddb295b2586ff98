"""The text VAE of He et al. 2019: LSTM encoder -> posterior head; a decoder fed z at every step (the LSTM, or
another of `decoders.py` by model.decoder)."""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn as nn

from .config import ModelConfig
from .decoders import Decoder, LSTMDecoder, make_decoder  # noqa: F401 - LSTMDecoder: its home before decoders.py
from .posterior import Gaussian, Posterior


def precision(device: torch.device | str, name: str):
    """Context for the configured precision: fp32 as is, or bfloat16 autocast."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=name == "bf16")


class LSTMEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.emb)
        self.lstm = nn.LSTM(cfg.emb, cfg.enc_hidden, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, L] (one length per batch, no padding) -> last hidden state [B, H]."""
        _, (h, _) = self.lstm(self.embed(tokens))
        return h[-1]

    def states(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, L] -> the hidden state after every token [B, L, H] (the last one is `forward`'s): for remedies
        with a posterior per time step (TWR-VAE). `forward` stays the path every other method takes."""
        out, _ = self.lstm(self.embed(tokens))
        return out


class PosteriorHead(nn.Module):
    """Encoder state -> q(z|x): a linear map without bias (`linear`, the part AE pretraining copies), then
    `transform`, which a remedy overrides to change the posterior (batch norm, a variance gate, a vMF direction).
    A head is built by its method's `posterior_head` hook; the model initialises it (He et al.'s init, or PyTorch's
    for the encoder side with model.encoder_init='pytorch'); layers it adds keep their own init."""

    def __init__(self, hidden: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(hidden, out_features, bias=False)

    def forward(self, h: torch.Tensor) -> Posterior:
        return self.transform(self.linear(h))

    def transform(self, stats: torch.Tensor) -> Posterior:
        raise NotImplementedError


class GaussianHead(PosteriorHead):
    """(mu, log sigma^2) = W h: the diagonal Gaussian of He et al."""

    def __init__(self, hidden: int, nz: int):
        super().__init__(hidden, 2 * nz)

    def transform(self, stats: torch.Tensor) -> Posterior:
        mu, logvar = stats.chunk(2, -1)
        return Gaussian(mu, logvar)


class TextVAE(nn.Module):
    """Encoder -> posterior head -> decoder. `make_head(cfg)` builds the method's head (None, or returning None:
    the Gaussian head).

    Initialisation draws the weights of He et al.'s Gaussian model first — encoder, Gaussian head, decoder —
    and only then builds and initialises the method's own head: with one seed every method starts from the same
    encoder and decoder weights, whatever its posterior (a head built before would draw from the seed first)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, *, latent: bool = True, skip: bool = False,
                 make_head: Callable[[ModelConfig], PosteriorHead | None] | None = None):
        super().__init__()
        self.cfg = cfg
        self.encoder = LSTMEncoder(cfg, vocab_size) if latent else None
        self.head: PosteriorHead | None = GaussianHead(cfg.enc_hidden, cfg.nz) if latent else None
        self.decoder: Decoder = make_decoder(cfg if latent else _no_latent(cfg), vocab_size, skip=skip)
        self.reset_parameters()
        head = make_head(cfg) if make_head is not None and latent else None
        if head is not None:
            self.head = head
            self.reset_parameters(head)

    @property
    def has_latent(self) -> bool:
        return self.encoder is not None

    def reset_parameters(self, module: nn.Module | None = None) -> None:
        """He et al.: U(-0.01, 0.01) for weights, U(-0.1, 0.1) for embeddings; BN and LayerNorm layers keep their
        own init.
        With cfg.encoder_init == "pytorch" the encoder and its head take PyTorch's defaults instead."""
        default_init = {id(m) for part in (self.encoder, self.head) if part is not None and
                        self.cfg.encoder_init == "pytorch" for m in part.modules()}
        for m in (module or self).modules():
            if id(m) in default_init and isinstance(m, (nn.Embedding, nn.LSTM, nn.Linear)):
                m.reset_parameters()
            elif isinstance(m, nn.Embedding):
                nn.init.uniform_(m.weight, -self.cfg.emb_init_range, self.cfg.emb_init_range)
            elif isinstance(m, (nn.LSTM, nn.Linear, nn.Conv1d)):
                for p in m.parameters(recurse=False):
                    nn.init.uniform_(p, -self.cfg.init_range, self.cfg.init_range)

    def posterior(self, tokens: torch.Tensor) -> Posterior:
        return self.head(self.encoder(tokens))

    def encoder_parameters(self) -> list[nn.Parameter]:
        if not self.has_latent:
            return []
        return [p for m in (self.encoder, self.head) for p in m.parameters() if p.requires_grad]

    def decoder_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.decoder.parameters() if p.requires_grad]


def _no_latent(cfg: ModelConfig) -> ModelConfig:
    return dataclasses.replace(cfg, nz=0)
