"""p(x|z): the decoders of the decoder axis (`model.decoder`), behind one interface.

Every decoder maps (inputs [R, L] token ids, z [R, nz] or None) to hidden states [R, L, dec_hidden] (`hidden`);
the shared `Decoder` base turns them into logits through the output layer `out` (dec_hidden -> V, the same shape
for every decoder) plus Skip-VAE's z -> logits path, and into log p(x|z) for any number of z per sentence
(`log_prob`), with every position scored in one batched call (no loop over time in training or IW-NLL).
`generate` writes text from z (greedy or sampled at temperature 1): token by token, every row at once.

* `lstm`: He et al.'s decoder (the protocol's; unchanged).
* `cnn`: Yang et al. 2017's dilated causal CNN: z joined to every input embedding, residual blocks of
  (1x1 conv to half width, dilated causal conv, 1x1 conv back), dilations `model.cnn_dilations`.
* `transformer`: a causal pre-norm Transformer trained from scratch, sinusoidal positions, z added to every input
  embedding (`model.tf_z=add`) or read as a one-vector prefix by the self-attention (`memory`).

`cnn` and `transformer` are as wide as makes their core (everything but the embedding and the output layer) as
large as the LSTM's core at the same size (`model.dec_width=0`), so the three compare at equal parameter counts.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .data.vocab import BOS, EOS, PAD


class Decoder(nn.Module):
    """The shared part of every decoder: a subclass builds `out` (and `skip`) and implements `hidden`."""

    out: nn.Linear
    skip: nn.Linear | None

    def hidden(self, inputs: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """inputs [R, L] token ids, z [R, nz] or None -> dropped-out hidden states [R, L, dec_hidden]; position t
        sees inputs[:, :t+1] only."""
        raise NotImplementedError

    def logits(self, inputs: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """inputs [R, L] token ids, z [R, nz] or None -> logits [R, L, V]."""
        logits = self.out(self.hidden(inputs, z))
        return logits if self.skip is None else logits + self.skip(z).unsqueeze(1)

    def log_prob(self, tokens: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """log p(x|z) summed over the targets w1..wn </s>.

        tokens [B, T+2] (<s> .. </s>); z [B, n, nz] (n samples per sentence) or None -> [B, n] (n=1 if None).
        """
        return self.token_log_prob(tokens, z).sum(-1)

    def token_log_prob(self, tokens: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """log p(x_t | x_<t, z) of each target, as `log_prob` computes it: [B, n, T+1]."""
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
        return -nll.view(B, n, -1)

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

    # --- generation: one sentence per row of z, token by token, every row at once --------------------------------
    def start(self, z: torch.Tensor | None, rows: int) -> Any:
        """The decoding state before <s>. This default keeps the prefix and recomputes `hidden` on all of it at
        every step (exact for any causal decoder; quadratic in the length, but only the last position goes through
        the output layer: text evidence decodes a few hundred sentences); the LSTM keeps its (h, c) instead."""
        return torch.empty(rows, 0, dtype=torch.long, device=self.out.weight.device), z

    def step(self, state: Any, token: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Feed token [R] -> (logits [R, V] of the next token, as `logits` computes them; the new state)."""
        prefix, z = state
        prefix = torch.cat([prefix, token[:, None]], 1)
        return self._output(self.hidden(prefix, z)[:, -1], z), (prefix, z)

    def _output(self, h: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """Hidden states [R, H] -> logits [R, V]: the output layer plus Skip-VAE's z path."""
        logits = self.out(h)
        return logits if self.skip is None else logits + self.skip(z)

    @torch.no_grad()
    def generate(self, z: torch.Tensor | None, max_tokens: int, *, greedy: bool = True, rows: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode one sentence per row of z [R, nz] (or `rows` rows without z, the LM) from <s>: each next token
        is the argmax of the logits (`greedy`) or drawn from their softmax (temperature 1, from `generator` or
        torch's global generator), every row in one call per step. A row stops at </s>; decoding stops when every
        row has, or after `max_tokens` tokens (</s> counted). Returns [R, T <= max_tokens]: the tokens, </s>
        included where one was written, then <pad>. Call it in eval mode (dropout would apply)."""
        R = z.shape[0] if z is not None else rows
        if R is None:
            raise ValueError("generate without z needs `rows`, the number of sentences")
        state = self.start(z, R)
        token = torch.full((R,), BOS, dtype=torch.long, device=self.out.weight.device)
        done = torch.zeros(R, dtype=torch.bool, device=token.device)
        out = []
        for _ in range(max_tokens):
            logits, state = self.step(state, token)
            if greedy:
                token = logits.argmax(-1)
            else:
                token = torch.multinomial(logits.float().softmax(-1), 1, generator=generator)[:, 0]
            out.append(token.masked_fill(done, PAD))
            done = done | (token == EOS)
            if bool(done.all()):
                break
        return torch.stack(out, 1) if out else torch.empty(R, 0, dtype=torch.long, device=token.device)


class LSTMDecoder(Decoder):
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
        h, _ = self.lstm(self._inputs(inputs, z), self._state0(z))
        return self.drop_out(h)

    def _inputs(self, inputs: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """[embedding; z] at every position (the embedding alone without z)."""
        emb = self.drop_in(self.embed(inputs))
        if z is None or not self.nz:
            return emb
        return torch.cat([emb, z.unsqueeze(1).expand(-1, emb.shape[1], -1)], -1)

    def _state0(self, z: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(h0, c0) = (tanh(Wz), Wz), or None (zeros) without z."""
        if z is None or not self.nz:
            return None
        c0 = self.init_state(z).unsqueeze(0)
        return torch.tanh(c0), c0

    def start(self, z: torch.Tensor | None, rows: int) -> Any:
        return z, self._state0(z)

    def step(self, state: Any, token: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """One LSTM step from the kept (h, c): the same logits as `logits` on the whole prefix."""
        z, hc = state
        h, hc = self.lstm(self._inputs(token[:, None], z), hc)
        return self._output(self.drop_out(h[:, 0]), z), (z, hc)


class ResidualBlock(nn.Module):
    """Yang et al.'s (ByteNet's) residual block: x + W3 relu(dilated causal conv(relu(W1 relu(x)))); W1 halves
    the channels, W3 restores them. x [R, C, L]."""

    def __init__(self, width: int, kernel: int, dilation: int, dropout: float = 0.0):
        super().__init__()
        self.pad = (kernel - 1) * dilation          # on the left only: position t sees t and earlier
        self.reduce = nn.Conv1d(width, width // 2, 1)
        self.conv = nn.Conv1d(width // 2, width // 2, kernel, dilation=dilation)
        self.expand = nn.Conv1d(width // 2, width, 1)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.reduce(F.relu(x))
        h = self.conv(F.pad(F.relu(h), (self.pad, 0)))
        return x + self.drop(self.expand(F.relu(h)))


class CNNDecoder(Decoder):
    """Yang et al. 2017's dilated CNN decoder: [embedding; z] at every position -> width channels -> residual
    blocks with dilations cfg.cnn_dilations -> dec_hidden -> the output layer."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, skip: bool = False):
        super().__init__()
        width = decoder_width(cfg)
        self.nz = cfg.nz
        self.embed = nn.Embedding(vocab_size, cfg.emb)
        self.drop_in = nn.Dropout(cfg.dec_dropout_in)
        self.inp = nn.Linear(cfg.emb + cfg.nz, width)
        self.blocks = nn.Sequential(*(ResidualBlock(width, cfg.cnn_kernel, d, cfg.cnn_dropout)
                                      for d in cfg.cnn_dilations))
        self.proj = nn.Linear(width, cfg.dec_hidden)
        self.drop_out = nn.Dropout(cfg.dec_dropout_out)
        self.out = nn.Linear(cfg.dec_hidden, vocab_size, bias=False)
        self.skip = nn.Linear(cfg.nz, vocab_size, bias=False) if skip and cfg.nz else None

    def hidden(self, inputs: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        emb = self.drop_in(self.embed(inputs))
        if z is not None and self.nz:
            emb = torch.cat([emb, z.unsqueeze(1).expand(-1, emb.shape[1], -1)], -1)
        x = self.blocks(self.inp(emb).transpose(1, 2)).transpose(1, 2)
        return self.drop_out(self.proj(F.relu(x)))


class TransformerBlock(nn.Module):
    """Pre-norm causal self-attention and a 4x-wide GELU feed-forward layer, each residual. x [R, L, W]."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.attn_out = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.ff1 = nn.Linear(width, 4 * width)
        self.ff2 = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        R, L, W = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(R, L, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)
        a = _causal_attention(q, k, v)
        x = x + self.attn_out(a.transpose(1, 2).reshape(R, L, W))
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))


def _causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + causal mask) v, written out: SA-VAE differentiates the decoder twice, which the
    fused attention kernels do not support."""
    L = q.shape[-2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    mask = torch.ones(L, L, dtype=torch.bool, device=q.device).triu(1)
    return scores.masked_fill(mask, float("-inf")).softmax(-1) @ v


def sinusoid(length: int, width: int, device) -> torch.Tensor:
    """Vaswani et al.'s sinusoidal positions [length, width] (no parameters, no maximum length)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width))
    out = torch.zeros(length, width, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)[:, :width // 2]
    return out


class TransformerDecoder(Decoder):
    """A causal pre-norm Transformer from scratch: embedding -> width, + sinusoidal positions, z added to every
    position (`tf_z=add`) or prepended as one vector every position attends to (`memory`, Optimus's two ways)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, skip: bool = False):
        super().__init__()
        width = decoder_width(cfg)
        self.nz, self.z_mode = cfg.nz, cfg.tf_z
        self.embed = nn.Embedding(vocab_size, cfg.emb)
        self.drop_in = nn.Dropout(cfg.dec_dropout_in)
        self.inp = nn.Linear(cfg.emb, width)
        self.z_in = nn.Linear(cfg.nz, width) if cfg.nz else None
        self.blocks = nn.Sequential(*(TransformerBlock(width, cfg.tf_heads) for _ in range(cfg.tf_layers)))
        self.ln_f = nn.LayerNorm(width)
        self.proj = nn.Linear(width, cfg.dec_hidden)
        self.drop_out = nn.Dropout(cfg.dec_dropout_out)
        self.out = nn.Linear(cfg.dec_hidden, vocab_size, bias=False)
        self.skip = nn.Linear(cfg.nz, vocab_size, bias=False) if skip and cfg.nz else None

    def hidden(self, inputs: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        x = self.inp(self.drop_in(self.embed(inputs)))
        x = x + sinusoid(x.shape[1], x.shape[2], x.device).to(x.dtype)
        prefix = z is not None and self.nz and self.z_mode == "memory"
        if z is not None and self.nz:
            zw = self.z_in(z).unsqueeze(1)
            x = torch.cat([zw, x], 1) if prefix else x + zw
        x = self.ln_f(self.blocks(x))
        return self.drop_out(self.proj(x[:, 1:] if prefix else x))


DECODERS = {"lstm": LSTMDecoder, "cnn": CNNDecoder, "transformer": TransformerDecoder}


def make_decoder(cfg: ModelConfig, vocab_size: int, skip: bool = False) -> Decoder:
    return DECODERS[cfg.decoder](cfg, vocab_size, skip=skip)


def core_parameters(cfg: ModelConfig) -> int:
    """Parameters of cfg's decoder outside the embedding and the output layers (which every decoder shares)."""
    with torch.device("meta"):
        dec = make_decoder(cfg, 1)
    return sum(p.numel() for p in dec.parameters()) - cfg.emb - cfg.dec_hidden


@functools.lru_cache(maxsize=64)
def decoder_width(cfg: ModelConfig) -> int:
    """cfg.dec_width, or (0) the width whose core is closest in size to the LSTM decoder's core at the same size:
    a multiple of 8 that the Transformer's heads divide."""
    if cfg.dec_width or cfg.decoder == "lstm":
        return cfg.dec_width or cfg.dec_hidden
    target = core_parameters(dataclasses.replace(cfg, decoder="lstm"))
    step = math.lcm(8, cfg.tf_heads) if cfg.decoder == "transformer" else 8

    def size(k: int) -> int:
        return core_parameters(dataclasses.replace(cfg, dec_width=k * step))
    lo, hi = 1, max(2, 4 * cfg.dec_hidden // step)
    while lo < hi:                              # the first multiple whose core is at least the target's
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if size(mid) < target else (lo, mid)
    best = min((k for k in (lo - 1, lo) if k >= 1), key=lambda k: abs(size(k) - target))
    return best * step
