"""The LSTM text VAE of He et al. 2019: LSTM encoder -> posterior head; LSTM decoder fed z at every step."""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
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


class LSTMDecoder(nn.Module):
    """p(x|z): z joined to every input embedding, c0 = W z, h0 = tanh(c0); optional z -> logits skip path."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, skip: bool = False):
        super().__init__()
        self.nz = cfg.nz
        self.embed = nn.Embedding(vocab_size, cfg.emb)
        self.drop_in = nn.Dropout(cfg.dec_dropout_in)
        self.lstm = nn.LSTM(cfg.emb + cfg.nz, cfg.dec_hidden, batch_first=True)
        self.init_state = nn.Linear(cfg.nz, cfg.dec_hidden, bias=False) if cfg.nz else None
        self.drop_out = nn.Dropout(cfg.dec_dropout_out)
        self.out = nn.Linear(cfg.dec_hidden, vocab_size, bias=False)
        self.skip = nn.Linear(cfg.nz, vocab_size, bias=False) if skip and cfg.nz else None

    def hidden(self, inputs: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """inputs [R, L] token ids, z [R, nz] or None -> dropped-out LSTM outputs [R, L, H]."""
        emb = self.drop_in(self.embed(inputs))
        state = None
        if z is not None and self.nz:
            emb = torch.cat([emb, z.unsqueeze(1).expand(-1, emb.shape[1], -1)], -1)
            c0 = self.init_state(z).unsqueeze(0)
            state = (torch.tanh(c0), c0)
        h, _ = self.lstm(emb, state)
        return self.drop_out(h)

    def logits(self, inputs: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """inputs [R, L] token ids, z [R, nz] or None -> logits [R, L, V]."""
        logits = self.out(self.hidden(inputs, z))
        return logits if self.skip is None else logits + self.skip(z).unsqueeze(1)

    def log_prob(self, tokens: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """log p(x|z) summed over the targets w1..wn </s>.

        tokens [B, T+2] (<s> .. </s>); z [B, n, nz] (n samples per sentence) or None -> [B, n] (n=1 if None).
        """
        B = tokens.shape[0]
        n = 1 if z is None else z.shape[1]
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        if n > 1:
            inputs = inputs.repeat_interleave(n, 0)
            targets = targets.repeat_interleave(n, 0)
        z = None if z is None else z.reshape(B * n, -1)
        if torch.is_grad_enabled():
            logits = self.logits(inputs, z)
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
        else:
            nll = self._nll_no_grad(self.hidden(inputs, z), targets, z)
        return -nll.view(B, n, -1).sum(-1)

    def _nll_no_grad(self, h: torch.Tensor, targets: torch.Tensor, z: torch.Tensor | None,
                     chunk_elems: int = 2**21) -> torch.Tensor:
        """Cross-entropy without materialising all logits: rows in cache-sized chunks (2-3x less memory traffic)."""
        R, L, H = h.shape
        h, targets = h.reshape(-1, H), targets.reshape(-1)
        skip = None if self.skip is None else self.skip(z)
        out = torch.empty(R * L, device=h.device, dtype=torch.float32)
        step = max(1, chunk_elems // self.out.out_features)
        for i in range(0, R * L, step):
            logits = self.out(h[i:i + step])
            if skip is not None:
                logits = logits + skip[torch.arange(i, min(i + step, R * L), device=h.device) // L]
            out[i:i + step] = torch.logsumexp(logits.float(), -1) - logits.gather(1, targets[i:i + step, None])[:, 0].float()
        return out


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
        self.decoder = LSTMDecoder(cfg if latent else _no_latent(cfg), vocab_size, skip=skip)
        self.reset_parameters()
        head = make_head(cfg) if make_head is not None and latent else None
        if head is not None:
            self.head = head
            self.reset_parameters(head)

    @property
    def has_latent(self) -> bool:
        return self.encoder is not None

    def reset_parameters(self, module: nn.Module | None = None) -> None:
        """He et al.: U(-0.01, 0.01) for weights, U(-0.1, 0.1) for embeddings; BN layers keep their own init.
        With cfg.encoder_init == "pytorch" the encoder and its head take PyTorch's defaults instead."""
        default_init = {id(m) for part in (self.encoder, self.head) if part is not None and
                        self.cfg.encoder_init == "pytorch" for m in part.modules()}
        for m in (module or self).modules():
            if id(m) in default_init and isinstance(m, (nn.Embedding, nn.LSTM, nn.Linear)):
                m.reset_parameters()
            elif isinstance(m, nn.Embedding):
                nn.init.uniform_(m.weight, -self.cfg.emb_init_range, self.cfg.emb_init_range)
            elif isinstance(m, (nn.LSTM, nn.Linear)):
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
