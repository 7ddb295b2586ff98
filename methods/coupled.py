from dataclasses import dataclass

import torch
import torch.nn as nn

from ..config import ModelConfig
from ..method import Loss, Method, MethodParams, param
from ..model import LSTMDecoder, TextVAE
from ..registry import register
from .helpers import require

IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)    # the authors' compute_imq_dist_couple


def imq_coupling(sq_dist: torch.Tensor, nz: int) -> torch.Tensor:
    """-sum_s C_s / (C_s + d²), C_s = 2·nz·s over the authors' scales (Experiment.py `compute_imq_dist_couple`: its
    base is 2·latent_dim whatever the signal's width). Minimal (-7) when the two signals agree. [B] -> [B]."""
    c = 2.0 * nz * sq_dist.new_tensor(IMQ_SCALES)
    return -(c / (c + sq_dist.unsqueeze(-1))).sum(-1)


class CoupledModel(TextVAE):
    """TextVAE plus the coupled deterministic path: a linear map from the shared encoder's state to a code (the mean
    of the authors' PosteriorGaussianCouple) and a second decoder that shares the VAE decoder's word embedding
    (their DecoderCouple gets the same `decoder_emb`) and nothing else."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, make_head=None):
        super().__init__(cfg, vocab_size, make_head=make_head)
        self.couple_head = nn.Linear(cfg.enc_hidden, cfg.nz, bias=False)
        self.couple_decoder = LSTMDecoder(cfg, vocab_size)
        self.reset_parameters(self.couple_head)
        self.reset_parameters(self.couple_decoder)
        self.couple_decoder.embed = self.decoder.embed

    def encoder_parameters(self) -> list[nn.Parameter]:
        return super().encoder_parameters() + list(self.couple_head.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        shared = {id(p) for p in self.decoder.parameters()}
        return super().decoder_parameters() + [p for p in self.couple_decoder.parameters()
                                               if p.requires_grad and id(p) not in shared]


@register("coupled", aliases=("coupled-vae",))
class CoupledVAE(Method):
    """Coupled-VAE (Wu et al. 2020): a deterministic AE shares the encoder; the VAE decoder's signal is pulled to its.

    As the authors' code (ChenWu98/Coupled-VAE, Coupled-VAE/Modules/vae_couple.py `VAE_COUPLE.forward`, Experiment.py
    for 'vae-couple'): the encoder is shared; a second head maps its state to a deterministic code, read by a second
    decoder with its own weights (only the word embedding is shared with the VAE decoder); the loss is
    rec + w·KL + λ_seq·rec_coupled + λ_couple·mean(-Σ_s C_s/(C_s + |g - g_c|²)), g the VAE decoder's signal from z
    and g_c the coupled decoder's from its code, held fixed (detach) so that only the VAE path is pulled. Their
    signal is the decoder's input `toInit(z)` (fed as its first input and beside every word); our decoder (He et
    al.'s) reads z beside every word and through c0 = W z, so the signal matched is c0, the decoder's initial cell
    state: an adaptation to this decoder. λ_couple 0.1 and λ_seq 1 are their PTB/Yelp/Yahoo configuration. Scoring
    uses the VAE path only, as theirs."""

    relative_cost = 2.0        # step time 2.0x vanilla's: a second decoder (test_method_ratios.py --quick)

    @dataclass(frozen=True)
    class Params(MethodParams):
        couple_weight: float = param(0.1, "λ_couple, weight of the IMQ signal-matching term (their config: 0.1)", ge=0)
        seq_weight: float = param(1.0, "λ_seq, weight of the coupled AE's reconstruction (their config: 1)", ge=0)

        def validate(self) -> None:
            require(self.couple_weight >= 0, f"coupled.couple_weight={self.couple_weight!r} must be >= 0 (the "
                                             f"authors' config: 0.1)")
            require(self.seq_weight >= 0, f"coupled.seq_weight={self.seq_weight!r} must be >= 0 (the authors' "
                                          f"config: 1)")

        @staticmethod
        def search_space(trial) -> dict:
            return {"couple_weight": trial.suggest_float("couple_weight", 0.01, 10.0, log=True)}

    def check_config(self, cfg) -> None:
        require(cfg.model.decoder == "lstm",
                f"coupled with model.decoder={cfg.model.decoder!r}: the coupling matches the decoders' initial LSTM "
                f"cell state c0 = Wz (our adaptation of the authors' toInit(z)), which only the LSTM decoder has; "
                f"use --set model.decoder=lstm")

    def build_model(self, cfg: ModelConfig, vocab_size: int) -> TextVAE:
        return CoupledModel(cfg, vocab_size, make_head=self.posterior_head)

    def coupled_terms(self, model: CoupledModel, tokens: torch.Tensor, h: torch.Tensor, z: torch.Tensor):
        """([B] coupled AE's -log p(x|code), [B] IMQ coupling of the VAE decoder's c0 to the coupled one's)."""
        code = model.couple_head(h)
        rec_c = -model.couple_decoder.log_prob(tokens, code.unsqueeze(1)).squeeze(1)
        signal = model.decoder.init_state(z[:, 0])
        signal_c = model.couple_decoder.init_state(code).detach()
        return rec_c, imq_coupling((signal - signal_c).pow(2).sum(-1), model.cfg.nz)

    def loss(self, model: CoupledModel, batch, kl_weight: float) -> Loss:
        h = model.encoder(batch.tokens)
        post = model.head(h)
        z = post.rsample(1)
        rec = -model.decoder.log_prob(batch.tokens, z).squeeze(1)
        rec_c, couple = self.coupled_terms(model, batch.tokens, h, z)
        p = self.params
        return self.elbo_loss(model, batch.tokens, post, kl_weight, rec=rec,
                              extra_terms=p.seq_weight * rec_c + p.couple_weight * couple,
                              extra={"rec_coupled": rec_c.mean().item(), "couple": couple.mean().item()})

    def invariant(self, run) -> None:
        """The two decoders share only the word embedding (the same tensor), the coupled path's parameters are trained
        by the decoder and encoder optimisers, and the coupling term is in [-7, 0) and sends no gradient to the
        coupled path (its signal is detached)."""
        model = run.model
        assert model.couple_decoder.embed is model.decoder.embed, "the decoders do not share the word embedding"
        assert model.couple_decoder.lstm is not model.decoder.lstm, "the coupled decoder must have its own LSTM"
        batch = run.train_batches[0]
        model.train()
        try:
            model.zero_grad()
            h = model.encoder(batch.tokens)
            z = model.head(h).rsample(1)
            _, couple = self.coupled_terms(model, batch.tokens, h, z)
            assert bool((couple >= -len(IMQ_SCALES) - 1e-6).all() and (couple < 0).all()), "coupling out of [-7, 0)"
            couple.sum().backward()
            assert model.couple_decoder.init_state.weight.grad is None, "the coupling moved the coupled decoder"
            assert model.couple_head.weight.grad is None, "the coupling moved the coupled head"
        finally:
            model.zero_grad()
            model.eval()
