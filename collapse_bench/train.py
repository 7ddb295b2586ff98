"""Training loop of He et al. 2019: separate encoder/decoder optimisers, gradient clipping, lr halving
with reload of the best checkpoint, early stopping, model selection on the validation ELBO."""
from __future__ import annotations

import contextlib
import copy
import random
import time
from typing import Callable

import numpy as np
import torch

from . import evaluate as ev
from .config import SizeConfig
from .data import Corpus, Split, bucket_batches
from .method import Method
from .model import precision


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def subsample(split: Split, n: int, seed: int) -> Split:
    if len(split) <= n:
        return split
    idx = np.sort(np.random.default_rng(seed).choice(len(split), n, replace=False))
    return Split([split.sentences[i] for i in idx], None if split.labels is None else split.labels[idx])


class Trainer:
    def __init__(self, method: Method, cfg: SizeConfig, corpus: Corpus, *, seed: int = 0, device: str = "cpu",
                 on_step: Callable[[int], None] | None = None):
        self.method, self.cfg, self.corpus, self.seed = method, cfg, corpus, seed
        self.device = torch.device(device)
        self.on_step = on_step
        method.check_config(cfg)
        seed_everything(seed)
        self.model = method.build_model(cfg.model, len(corpus.vocab)).to(self.device)
        self.lr = cfg.train.lr
        self._make_optimizers()
        self.step = 0
        # The reference code anneals over N/batch_size iterations per epoch, not over the (more numerous)
        # length buckets; keep that so "10 epochs of annealing" means what it meant there.
        self.steps_per_epoch = max(1.0, len(corpus.train) / cfg.train.batch_size)
        self.train_batches = [b for b in bucket_batches(corpus.train, cfg.train.batch_size, seed=seed)
                              if b.size >= method.min_batch_size]
        self.valid_batches = bucket_batches(corpus.valid, cfg.eval.batch_size)
        self.curve_split = subsample(corpus.valid, cfg.train.curve_sentences, seed)
        self.curves: list[dict] = []
        self.rng = np.random.default_rng(seed)   # batch order, and any random batch a method draws

    def _make_optimizers(self) -> None:
        def make(params):
            if not params:
                return None
            if self.cfg.train.optimizer == "adam":
                return torch.optim.Adam(params, lr=self.lr)
            return torch.optim.SGD(params, lr=self.lr)
        self.enc_opt = make(self.model.encoder_parameters())
        self.dec_opt = make(self.model.decoder_parameters())

        self._params = [p for o in self.optimizers for g in o.param_groups for p in g["params"]]

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.enc_opt, self.dec_opt) if o is not None]

    def optimize(self, loss: torch.Tensor, which: str = "both") -> None:
        """Zero grads, backpropagate, clip the gradient norm of all parameters jointly at cfg.train.clip, step the
        chosen optimiser(s). Joint, as the reference code's clip_grad_norm_(vae.parameters(), 5), also when only
        the encoder steps (Agg-VAE's inner loop): clipping each part alone would change their balance."""
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)
        loss.backward()
        opts = {"both": self.optimizers, "encoder": [self.enc_opt], "decoder": [self.dec_opt]}[which]
        torch.nn.utils.clip_grad_norm_(self._params, self.cfg.train.clip)
        for o in opts:
            o.step()

    @contextlib.contextmanager
    def evaluating(self):
        """Eval mode (no dropout, BN on running statistics) at the eval precision, without gradients; train mode
        after."""
        self.model.eval()
        try:
            with torch.no_grad(), precision(self.device, self.cfg.eval.precision):
                yield
        finally:
            self.model.train()

    def validate(self) -> dict[str, float]:
        """Validation ELBO with KL weight 1 (1 sample) plus MI/AU on a fixed subset, in eval mode."""
        with self.evaluating():
            return self._validate()

    def _validate(self) -> dict[str, float]:
        rec, kl = ev.elbo_terms(self.method, self.model, self.corpus.valid, self.cfg.eval.batch_size, self.device)
        out = {"valid_loss": float((rec + kl).mean()), "valid_recon": float(rec.mean()), "valid_kl": float(kl.mean())}
        if self.model.has_latent:
            out.update(self._latent_stats())
        else:
            out.update(valid_mi=0.0, valid_au=0)
        return out

    def latent_point(self) -> dict:
        """MI, AU and per-dimension KL on the curve subset, in eval mode (a point inside an epoch)."""
        if not self.model.has_latent:
            return {}
        with self.evaluating():
            return self._latent_stats()

    def _latent_stats(self) -> dict:
        post = ev.encode(self.method, self.model, self.curve_split, self.cfg.eval.batch_size, self.device)
        stats = ev.latent_stats(post, self.cfg.eval.au_threshold)
        out = {"valid_mi": stats.mi, "valid_au": stats.au}
        if hasattr(post, "kl_per_dim"):   # which units die, and when (Gaussian families)
            out["valid_kl_dims"] = [round(float(v), 5) for v in post.kl_per_dim().mean(0)]
        return out

    def fit(self) -> dict:
        """Train; leave the best-validation model loaded (or the last, train.select). Returns timing."""
        tc = self.cfg.train
        key = "valid_recon" if self.method.select_on == "recon" else "valid_loss"
        self.model.train()
        t_start = time.perf_counter()
        self.method.before_training(self)   # e.g. AE pretraining: counted as training time
        setup_time = time.perf_counter() - t_start
        best, best_state, ref, bad_epochs, decays = float("inf"), None, float("inf"), 0, 0
        train_time = 0.0
        for epoch in range(1, tc.epochs + 1):
            t0 = time.perf_counter()
            sums, n = {}, 0
            order = self.rng.permutation(len(self.train_batches))
            marks = {len(order) * k // tc.curve_points_per_epoch for k in range(1, tc.curve_points_per_epoch)}
            paused = 0.0
            for pos, i in enumerate(order, 1):
                batch = self.train_batches[i].to(self.device)
                with precision(self.device, tc.precision):
                    logs = self.method.train_step(self, batch)
                self.step += 1
                n += 1
                for k in ("loss", "kl", "kl_weight"):
                    sums[k] = sums.get(k, 0.0) + logs.get(k, 0.0)
                if self.on_step:
                    self.on_step(self.step)
                if pos in marks:     # a point inside the epoch: latent statistics only, not counted as training
                    t_point = time.perf_counter()
                    self.curves.append({"epoch": epoch - 1 + pos / len(order), "step": self.step, "partial": True,
                                        "kl_weight": logs.get("kl_weight", 0.0), **self.latent_point()})
                    paused += time.perf_counter() - t_point
            train_time += time.perf_counter() - t0 - paused
            valid = {"epoch": epoch, "step": self.step, "lr": self.lr,
                     "kl_weight": sums.get("kl_weight", 0.0) / max(n, 1),
                     "train_loss": sums.get("loss", 0.0) / max(n, 1),
                     "train_kl": sums.get("kl", 0.0) / max(n, 1), **self.validate()}
            self.curves.append(valid)
            self.method.on_epoch_end(self, epoch, valid)
            score = valid[key]
            if score < best:
                best, best_state = score, copy.deepcopy(self.model.state_dict())
            # LAG text.py: halve lr after `decay_patience` epochs worse than the reference value, only from
            # `decay_from_epoch` on, reloading the best checkpoint and rebuilding the optimisers.
            if score > ref:
                bad_epochs += 1
                if bad_epochs >= tc.decay_patience and epoch >= tc.decay_from_epoch:
                    decays += 1
                    bad_epochs, ref = 0, score
                    if decays >= tc.max_decays:
                        break
                    self.lr *= tc.lr_decay
                    self.model.load_state_dict(best_state)
                    self._make_optimizers()
            else:
                bad_epochs, ref = 0, score
        if best_state is not None and tc.select == "best":
            self.model.load_state_dict(best_state)
        self.model.eval()
        return {"train_seconds": setup_time + train_time, "before_training_seconds": setup_time,
                "wall_seconds": time.perf_counter() - t_start, "steps": self.step,
                "seconds_per_step": train_time / max(self.step, 1), "epochs": sum(not c.get("partial") for c in self.curves), "decays": decays,
                "best_valid": best}
